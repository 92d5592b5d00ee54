-- Runbook "ETL errors": etl_errors rows of the snapshots in scope by error type, with the number of distinct
-- snapshots and the newest occurrence. Binds the scope: from_ts, to_ts, namecodes, ids.
SELECT e.error_type, count(*) AS errors, count(DISTINCT e.snapshot_id) AS snapshots, max(e.created_at) AS newest
FROM etl_errors AS e
JOIN hero_snapshots AS h ON h.id = e.snapshot_id
WHERE {% include "verify/_scope.sql" %}
GROUP BY e.error_type
ORDER BY count(*) DESC, e.error_type
