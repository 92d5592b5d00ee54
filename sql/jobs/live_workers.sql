-- Workers holding a running chunk of a job with a fresh heartbeat (younger than claim_ttl_s).
-- Binds: job_id, claim_ttl_s.
SELECT DISTINCT worker
FROM backfill_chunks
WHERE job_id = %(job_id)s AND status = 'running' AND worker IS NOT NULL
  AND heartbeat_at > now() - make_interval(secs => %(claim_ttl_s)s)
