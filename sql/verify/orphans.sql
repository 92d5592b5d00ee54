-- Derived rows whose user or catalog row is missing (the schema db init creates has no foreign keys on
-- the per-item tables: the ETL guarantees them, this check proves it). Binds: limit.
{% import "etl/_macros.sql" as m %}
WITH orphans AS (
{% for e in m.ENTITIES %}
    {{ "UNION ALL " if not loop.first else "" }}SELECT {{ sqlstr(e.table) }} AS tbl, t.user_id, t.{{ ident(e.id_col) }} AS item_id,
           NOT EXISTS (SELECT 1 FROM users AS u WHERE u.id = t.user_id) AS missing_user,
           NOT EXISTS (SELECT 1 FROM {{ ident(e.catalog) }} AS c WHERE c.id = t.{{ ident(e.id_col) }}) AS missing_item
    FROM {{ ident(e.table) }} AS t
    WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.id = t.user_id)
       OR NOT EXISTS (SELECT 1 FROM {{ ident(e.catalog) }} AS c WHERE c.id = t.{{ ident(e.id_col) }})
{% endfor %}
)
SELECT tbl, user_id, item_id, missing_user, missing_item, count(*) OVER () AS total
FROM orphans
ORDER BY tbl, user_id, item_id
LIMIT %(limit)s
