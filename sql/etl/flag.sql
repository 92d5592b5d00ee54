-- Finish the staging verdict: a snapshot with any invalid element{% if catalog_policy == "fail" %}, or an id
-- missing from its catalog (policy `fail`),{% endif %} is not ok. Returns every not-ok snapshot id: the
-- per-snapshot reference path takes those. Binds no parameters.
{% import "etl/_macros.sql" as m %}
WITH bad AS (
{% for e in m.ENTITIES %}
    {{ "UNION " if not loop.first else "" }}SELECT sid FROM {{ ident("sf_stage_" ~ e.name) }} WHERE ok IS NOT TRUE
{% if catalog_policy == "fail" %}
    UNION
    SELECT st.sid FROM {{ ident("sf_stage_" ~ e.name) }} AS st
    WHERE NOT EXISTS (SELECT 1 FROM {{ ident(e.catalog) }} AS c WHERE c.id = st.{{ ident(e.id_col) }})
{% endif %}
{% endfor %}
),
flagged AS (
    UPDATE sf_stage_snap AS s SET ok = false
    FROM bad
    WHERE s.sid = bad.sid AND s.ok
    RETURNING s.sid
)
SELECT sid FROM flagged
UNION
SELECT sid FROM sf_stage_snap WHERE ok IS NOT TRUE
