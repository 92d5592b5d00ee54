-- Every placeholder catalog row (meta.placeholder = true, as etl/placeholders.sql creates them), with how
-- many rows of its user_* table use it and how many distinct users those rows belong to; by kind, id.
-- Binds no parameters.
{% import "etl/_macros.sql" as m %}
{% for e in m.ENTITIES %}
{{ "UNION ALL " if not loop.first else "" }}SELECT {{ sqlstr(e.name) }} AS kind, c.id, c.name,
       count(u.user_id) AS rows, count(DISTINCT u.user_id) AS users
FROM {{ ident(e.catalog) }} AS c
LEFT JOIN {{ ident(e.table) }} AS u ON u.{{ ident(e.id_col) }} = c.id
WHERE c.meta ->> 'placeholder' = 'true'
GROUP BY c.id, c.name
{% endfor %}
ORDER BY 1, 2
