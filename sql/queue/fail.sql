-- A queue_jobs row failed: retry later with backoff while attempts remain, else mark it failed.
-- Binds: id, error, retry_in_s.
UPDATE queue_jobs
SET status = CASE WHEN attempts < max_attempts THEN 'pending' ELSE 'failed' END,
    run_after = now() + make_interval(secs => %(retry_in_s)s),
    last_error = %(error)s,
    updated_at = now()
WHERE id = %(id)s
RETURNING status
