-- Delete the placeholder catalog rows (meta.placeholder = true) that no user_* row references; the NOT
-- EXISTS is in the DELETE itself, so the rows deleted are exactly the unreferenced ones this statement
-- sees (run after catalog/lock_catalogs.sql and catalog/lock_usage.sql). Returns (kind, id) of each row
-- deleted. Binds no parameters.
{% import "etl/_macros.sql" as m %}
WITH
{% for e in m.ENTITIES %}
{{ ident("gone_" ~ e.name) }} AS (
    DELETE FROM {{ ident(e.catalog) }} AS c
    WHERE c.meta ->> 'placeholder' = 'true'
      AND NOT EXISTS (SELECT 1 FROM {{ ident(e.table) }} AS u WHERE u.{{ ident(e.id_col) }} = c.id)
    RETURNING c.id
){{ "," if not loop.last else "" }}
{% endfor %}
{% for e in m.ENTITIES %}
{{ "UNION ALL " if not loop.first else "" }}SELECT {{ sqlstr(e.name) }} AS kind, id FROM {{ ident("gone_" ~ e.name) }}
{% endfor %}
ORDER BY 1, 2
