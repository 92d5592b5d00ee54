-- The most frequent etl_errors messages of a job's snapshots (its created_at range and selector), per type.
-- Binds the scope (from_ts, to_ts, namecodes, ids) and limit.
SELECT e.error_type, e.message, count(*) AS errors, min(e.snapshot_id::text) AS example_snapshot
FROM etl_errors AS e
JOIN hero_snapshots AS h ON h.id = e.snapshot_id
WHERE {% include "verify/_scope.sql" %}
GROUP BY e.error_type, e.message
ORDER BY count(*) DESC, e.error_type, e.message
LIMIT %(limit)s
