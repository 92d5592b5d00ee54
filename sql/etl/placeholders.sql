-- Catalog policy `placeholder`: insert a placeholder row ({"placeholder": true}) for every id the staged ok
-- snapshots use that its catalog lacks. Returns (kind, id) of each row created. Binds no parameters.
{% import "etl/_macros.sql" as m %}
WITH
{% for e in m.ENTITIES %}
{{ ident("new_" ~ e.name) }} AS (
    INSERT INTO {{ ident(e.catalog) }} (id, name, meta)
    SELECT DISTINCT st.{{ ident(e.id_col) }}, NULL::text, '{"placeholder": true}'::jsonb
    FROM {{ ident("sf_stage_" ~ e.name) }} AS st
    JOIN sf_stage_snap AS s ON s.sid = st.sid AND s.ok
    WHERE NOT EXISTS (SELECT 1 FROM {{ ident(e.catalog) }} AS c WHERE c.id = st.{{ ident(e.id_col) }})
    ORDER BY 1
    ON CONFLICT (id) DO NOTHING
    RETURNING id
){{ "," if not loop.last else "" }}
{% endfor %}
{% for e in m.ENTITIES %}
{{ "UNION ALL " if not loop.first else "" }}SELECT {{ sqlstr(e.name) }} AS kind, id FROM {{ ident("new_" ~ e.name) }}
{% endfor %}
