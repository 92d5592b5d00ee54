-- verify --full: every processed snapshot of a chunk of users (ids only: stage.sql reads the payloads
-- server-side). Binds: users uuid[].
SELECT h.id
FROM hero_snapshots AS h
WHERE h.user_id = ANY(%(users)s::uuid[]) AND h.processed_at IS NOT NULL
ORDER BY h.created_at, h.id
