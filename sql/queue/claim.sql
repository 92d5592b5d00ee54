-- Claim the next due queue_jobs row of the types this worker handles (SKIP LOCKED: no double claims); a
-- row left 'running' by a worker that died (updated_at older than stale_s) is claimed again.
-- Binds: types (text[]), stale_s.
UPDATE queue_jobs AS q
SET status = 'running', attempts = q.attempts + 1, updated_at = now()
FROM (
    SELECT id
    FROM queue_jobs
    WHERE type = ANY(%(types)s::text[])
      AND ((status = 'pending' AND run_after <= now())
           OR (status = 'running' AND updated_at < now() - make_interval(secs => %(stale_s)s)))
    ORDER BY priority DESC, run_after, created_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
) AS pick
WHERE q.id = pick.id
RETURNING q.*
