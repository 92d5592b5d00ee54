-- Placeholder catalog rows (meta.placeholder = true) created for ids the catalogs lacked: every kind, by id.
-- Binds: limit.
SELECT kind, id, name
FROM (
    SELECT 'troop' AS kind, c.id, c.name FROM troop_catalog AS c WHERE c.meta ->> 'placeholder' = 'true'
    UNION ALL
    SELECT 'pet', c.id, c.name FROM pet_catalog AS c WHERE c.meta ->> 'placeholder' = 'true'
    UNION ALL
    SELECT 'artifact', c.id, c.name FROM artifact_catalog AS c WHERE c.meta ->> 'placeholder' = 'true'
) AS p
ORDER BY kind, id
LIMIT %(limit)s
