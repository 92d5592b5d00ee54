-- Queue depth for the metrics: queue_jobs rows by type and status, and for the pending ones that are due
-- the age of the oldest (seconds since its run_after). Binds no parameters.
SELECT type,
       status,
       count(*) AS n,
       coalesce(extract(epoch FROM now() - min(run_after) FILTER (WHERE status = 'pending' AND run_after <= now())),
                0)::float8 AS oldest_due_s
FROM queue_jobs
GROUP BY type, status
