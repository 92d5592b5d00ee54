-- The next wanted snapshots of a chunk after its checkpoint, in keyset order, with their stored sizes
-- (for the byte cap). Binds: after_ts, after_id, hi_ts, hi_id, limit and the selector's parameters.
SELECT h.id, h.created_at, coalesce(h.size_bytes, pg_column_size(h.raw))::bigint AS size
FROM hero_snapshots AS h
WHERE (h.created_at, h.id) > (%(after_ts)s, %(after_id)s)
  AND (h.created_at, h.id) <= (%(hi_ts)s, %(hi_id)s)
  AND {% include "jobs/_selector.sql" %}
ORDER BY h.created_at, h.id
LIMIT %(limit)s
