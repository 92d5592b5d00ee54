-- The largest snapshot of a created_at range by size_bytes (pg_column_size of raw when size_bytes is
-- NULL), ties broken by id. Binds: from_ts, to_ts.
SELECT h.id, coalesce(h.size_bytes, pg_column_size(h.raw)) AS size_bytes, h.created_at
FROM hero_snapshots AS h
WHERE h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s
ORDER BY coalesce(h.size_bytes, pg_column_size(h.raw)) DESC, h.id
LIMIT 1
