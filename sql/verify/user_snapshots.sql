-- Every processed snapshot of one user, oldest first (the order the contract's outcome is defined by);
-- ids and metadata only, never the payload. Binds: user_id.
SELECT h.id, h.created_at, h.namecode, h.size_bytes
FROM hero_snapshots AS h
WHERE h.user_id = %(user_id)s AND h.processed_at IS NOT NULL
ORDER BY h.created_at, h.id
