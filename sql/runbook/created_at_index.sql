-- Valid, non-partial indexes on hero_snapshots whose leading key columns are (created_at, id): the keyset
-- scans of every job need one. Returns their names. Binds no parameters.
SELECT ic.relname AS index_name
FROM pg_index AS i
JOIN pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_class AS tc ON tc.oid = i.indrelid
JOIN pg_namespace AS n ON n.oid = tc.relnamespace
WHERE tc.relname = 'hero_snapshots'
  AND n.nspname = current_schema()
  AND i.indisvalid
  AND i.indpred IS NULL
  AND i.indnkeyatts >= 2
  AND (SELECT a.attname FROM pg_attribute AS a WHERE a.attrelid = tc.oid AND a.attnum = i.indkey[0]) = 'created_at'
  AND (SELECT a.attname FROM pg_attribute AS a WHERE a.attrelid = tc.oid AND a.attnum = i.indkey[1]) = 'id'
ORDER BY ic.relname
