-- Snapshots in scope that are neither processed nor recorded as failed (first ones, for the report).
-- Binds the scope (from_ts, to_ts, namecodes, ids) and limit.
SELECT h.id, h.created_at, h.namecode
FROM hero_snapshots AS h
WHERE {% include "verify/_scope.sql" %}
  AND h.processed_at IS NULL AND h.error_count = 0
  AND NOT EXISTS (SELECT 1 FROM etl_errors AS e WHERE e.snapshot_id = h.id)
ORDER BY h.created_at, h.id
LIMIT %(limit)s
