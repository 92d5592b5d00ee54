-- Ids among those given that their catalog lacks (policy `fail` on the reference path).
-- Binds: troop_ids, pet_ids, artifact_ids (integer[]).
{% import "etl/_macros.sql" as m %}
{% for e in m.ENTITIES %}
{{ "UNION ALL " if not loop.first else "" }}SELECT {{ sqlstr(e.name) }} AS kind, x.id
FROM unnest(%({{ e.name }}_ids)s::integer[]) AS x(id)
WHERE NOT EXISTS (SELECT 1 FROM {{ ident(e.catalog) }} AS c WHERE c.id = x.id)
{% endfor %}
ORDER BY 1, 2
