-- The most frequent etl_errors messages a job recorded itself (etl_errors.job_id), per type: other jobs over
-- the same range (earlier attempts, a later reprocess) have their own rows. Binds: job_id, limit.
SELECT e.error_type, e.message, count(*) AS errors, min(e.snapshot_id::text) AS example_snapshot
FROM etl_errors AS e
WHERE e.job_id = %(job_id)s
GROUP BY e.error_type, e.message
ORDER BY count(*) DESC, e.error_type, e.message
LIMIT %(limit)s
