-- Drop the staged rows of some snapshots (before the reference path re-stages them). Binds: ids uuid[].
{% import "etl/_macros.sql" as m %}
WITH d_snap AS (DELETE FROM sf_stage_snap WHERE sid = ANY(%(ids)s::uuid[]) RETURNING 1)
{% for e in m.ENTITIES %}
, {{ ident("d_" ~ e.name) }} AS (DELETE FROM {{ ident("sf_stage_" ~ e.name) }} WHERE sid = ANY(%(ids)s::uuid[]) RETURNING 1)
{% endfor %}
SELECT (SELECT count(*) FROM d_snap) AS snapshots
