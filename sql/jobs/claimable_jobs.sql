-- Running jobs that still have chunks a worker could claim (pending, or abandoned past claim_ttl_s).
-- Binds: claim_ttl_s.
SELECT j.job_id
FROM backfill_jobs AS j
WHERE j.status = 'running'
  AND EXISTS (
      SELECT 1 FROM backfill_chunks AS c
      WHERE c.job_id = j.job_id
        AND (c.status = 'pending'
             OR (c.status = 'running' AND c.heartbeat_at < now() - make_interval(secs => %(claim_ttl_s)s))))
ORDER BY j.created_at
