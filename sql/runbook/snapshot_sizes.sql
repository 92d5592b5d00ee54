-- Size and observation time of the given snapshots (those that exist). Returns id, created_at, size_bytes.
-- Binds: ids (uuid[]).
SELECT h.id, h.created_at, coalesce(h.size_bytes, pg_column_size(h.raw)) AS size_bytes
FROM hero_snapshots AS h
WHERE h.id = ANY(%(ids)s::uuid[])
