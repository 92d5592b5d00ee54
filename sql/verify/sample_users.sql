-- Parity sample: users with a processed snapshot in scope, picked deterministically by a seeded hash.
-- Binds the scope (from_ts, to_ts, namecodes, ids), seed and limit.
SELECT h.user_id
FROM hero_snapshots AS h
WHERE {% include "verify/_scope.sql" %}
  AND h.processed_at IS NOT NULL AND h.user_id IS NOT NULL
GROUP BY h.user_id
ORDER BY md5(%(seed)s::text || h.user_id::text), h.user_id
LIMIT %(limit)s
