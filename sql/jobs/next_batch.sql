-- The next wanted snapshots of a chunk below its checkpoint, newest first (descending keyset order over
-- (created_at, id)), with their stored sizes (for the byte cap). Newest first because the newest
-- observation wins: once a user's newest snapshot is written, the older ones mostly lose the comparison and
-- cost a read instead of a write. Binds: after_ts, after_id, lo_ts, lo_id, hi_ts, hi_id, limit and the
-- selector's parameters.
SELECT h.id, h.created_at, coalesce(h.size_bytes, pg_column_size(h.raw))::bigint AS size
FROM hero_snapshots AS h
WHERE (h.created_at, h.id) < (%(after_ts)s, %(after_id)s)
  AND (h.created_at, h.id) > (%(lo_ts)s, %(lo_id)s)
  AND (h.created_at, h.id) <= (%(hi_ts)s, %(hi_id)s)
  AND {% include "jobs/_selector.sql" %}
ORDER BY h.created_at DESC, h.id DESC
LIMIT %(limit)s
