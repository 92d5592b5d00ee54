-- Candidates for the validation pre-scan: up to `limit` snapshot ids of a range in md5(id || seed) order,
-- skipping `exclude` (payloads are fetched one at a time afterwards). Returns id, created_at, size_bytes.
-- Binds: from_ts, to_ts, seed (text), exclude (uuid[]), limit.
SELECT h.id, h.created_at, coalesce(h.size_bytes, pg_column_size(h.raw)) AS size_bytes
FROM hero_snapshots AS h
WHERE h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s
  AND NOT h.id = ANY(%(exclude)s::uuid[])
ORDER BY md5(h.id::text || %(seed)s::text), h.id
LIMIT %(limit)s
