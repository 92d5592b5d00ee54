-- The raw payload of one snapshot as JSON text, for the per-snapshot reference path (parsed client-side
-- with the standard library so that over-long integers stay exact). Binds: snapshot_id.
SELECT raw::text AS raw_text, namecode, created_at
FROM hero_snapshots
WHERE id = %(snapshot_id)s
