-- Claim the next chunk of a job: a pending one, or a running one whose worker stopped heartbeating (older
-- than claim_ttl_s) or is known dead, or one this very worker holds already (its claim or commit committed
-- but the reply was lost, e.g. in a server restart: worker names are unique per process).
-- Newest chunk first (see next_batch.sql). SKIP LOCKED: concurrent workers never claim the same chunk.
-- Binds: job_id, worker, claim_ttl_s, dead_workers (text[]).
UPDATE backfill_chunks AS c
SET status = 'running', worker = %(worker)s, claimed_at = now(), heartbeat_at = now()
FROM (
    SELECT job_id, chunk_no
    FROM backfill_chunks
    WHERE job_id = %(job_id)s
      AND (status = 'pending'
           OR (status = 'running' AND (heartbeat_at < now() - make_interval(secs => %(claim_ttl_s)s)
                                       OR worker = %(worker)s OR worker = ANY(%(dead_workers)s::text[]))))
    ORDER BY chunk_no DESC
    LIMIT 1
    FOR UPDATE SKIP LOCKED
) AS pick
WHERE c.job_id = pick.job_id AND c.chunk_no = pick.chunk_no
RETURNING c.*
