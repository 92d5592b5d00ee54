-- How many chunks of a job are not done, and how many of those a live worker holds.
-- Binds: job_id, claim_ttl_s.
SELECT count(*) FILTER (WHERE status <> 'done') AS open,
       count(*) FILTER (WHERE status = 'running' AND heartbeat_at >= now() - make_interval(secs => %(claim_ttl_s)s)) AS held
FROM backfill_chunks WHERE job_id = %(job_id)s
