-- Give a chunk back (pause, Ctrl-C, shutdown) so any worker can claim it at once. Binds: job_id, chunk_no, worker.
UPDATE backfill_chunks SET status = 'pending', worker = NULL, claimed_at = NULL
WHERE job_id = %(job_id)s AND chunk_no = %(chunk_no)s AND worker = %(worker)s AND status = 'running'
RETURNING chunk_no
