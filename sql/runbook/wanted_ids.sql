-- The snapshots a job with this selector would take, in keyset order, at most `limit`. Returns id,
-- created_at, size_bytes. Binds: limit and the selector's parameters (jobs/_selector.sql).
SELECT h.id, h.created_at, coalesce(h.size_bytes, pg_column_size(h.raw)) AS size_bytes
FROM hero_snapshots AS h
WHERE {% include "jobs/_selector.sql" %}
ORDER BY h.created_at, h.id
LIMIT %(limit)s
