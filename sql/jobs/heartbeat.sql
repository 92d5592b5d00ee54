-- A worker that is alive but not committing (backing off while throttled) keeps its chunk: refresh the
-- chunk's and the job's heartbeat. Binds: job_id, chunk_no, worker.
WITH c AS (
    UPDATE backfill_chunks SET heartbeat_at = now()
    WHERE job_id = %(job_id)s AND chunk_no = %(chunk_no)s AND worker = %(worker)s AND status = 'running'
    RETURNING 1
)
UPDATE backfill_jobs SET heartbeat_at = now()
WHERE job_id = %(job_id)s AND EXISTS (SELECT 1 FROM c)
RETURNING job_id
