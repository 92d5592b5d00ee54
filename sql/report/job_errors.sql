-- A job's failed snapshots by error type, from the etl_errors rows it recorded itself (etl_errors.job_id):
-- the same definition of "failed" as report/range_jobs.sql. Binds: job_id.
SELECT e.error_type, count(DISTINCT e.snapshot_id) AS snapshots
FROM etl_errors AS e
WHERE e.job_id = %(job_id)s
GROUP BY e.error_type
ORDER BY count(DISTINCT e.snapshot_id) DESC, e.error_type
