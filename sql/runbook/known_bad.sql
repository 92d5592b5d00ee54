-- Known-bad snapshots of a range: those with an etl_errors row, newest error per snapshot, picked in
-- md5(id || seed) order, skipping `exclude`. Returns id, created_at, size_bytes, error_type, message.
-- Binds: from_ts, to_ts, seed (text), exclude (uuid[]), limit.
SELECT b.id, b.created_at, b.size_bytes, b.error_type, b.message
FROM (
    SELECT DISTINCT ON (h.id) h.id, h.created_at, coalesce(h.size_bytes, pg_column_size(h.raw)) AS size_bytes,
           e.error_type, e.message
    FROM etl_errors AS e
    JOIN hero_snapshots AS h ON h.id = e.snapshot_id
    WHERE h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s
      AND NOT h.id = ANY(%(exclude)s::uuid[])
    ORDER BY h.id, e.created_at DESC
) AS b
ORDER BY md5(b.id::text || %(seed)s::text), b.id
LIMIT %(limit)s
