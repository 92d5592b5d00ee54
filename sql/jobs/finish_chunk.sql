-- Mark a chunk done (its worker found nothing left after its checkpoint). Binds: job_id, chunk_no, worker.
UPDATE backfill_chunks SET status = 'done', finished_at = now(), heartbeat_at = now()
WHERE job_id = %(job_id)s AND chunk_no = %(chunk_no)s AND worker = %(worker)s AND status = 'running'
RETURNING chunk_no
