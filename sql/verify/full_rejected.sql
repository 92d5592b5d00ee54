-- verify --full: the user and namecode of processed snapshots the contract rejects (to name the finding).
-- Binds: ids uuid[].
SELECT h.id, h.user_id, u.namecode, h.processed_at
FROM hero_snapshots AS h
LEFT JOIN users AS u ON u.id = h.user_id
WHERE h.id = ANY(%(ids)s::uuid[])
