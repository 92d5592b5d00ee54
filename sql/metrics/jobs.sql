-- Jobs for the metrics: every unfinished job, and those finished or failed in the last day, newest first
-- (bounded, so the label set stays small), with what is left to do. Binds: recent_s, limit.
SELECT job_id,
       status,
       greatest(coalesce(total_count, 0) - processed_count - error_count, 0) AS remaining
FROM backfill_jobs
WHERE status IN ('pending', 'running', 'paused')
   OR updated_at > now() - make_interval(secs => %(recent_s)s)
ORDER BY created_at DESC
LIMIT %(limit)s
