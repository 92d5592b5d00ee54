-- Mark a running job done when every chunk is done. Binds: job_id.
UPDATE backfill_jobs SET status = 'done', finished_at = now(), updated_at = now(), throttle_state = NULL
WHERE job_id = %(job_id)s AND status = 'running'
  AND NOT EXISTS (SELECT 1 FROM backfill_chunks WHERE job_id = %(job_id)s AND status <> 'done')
RETURNING *
