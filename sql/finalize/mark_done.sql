-- A job whose every chunk is done but whose row still says running (its last worker stopped before marking
-- it): mark it done with finished_at, as the worker would have. Binds: job_id.
UPDATE backfill_jobs SET status = 'done', finished_at = coalesce(finished_at, now()), updated_at = now(),
                         throttle_state = NULL
WHERE job_id = %(job_id)s AND status = 'running'
  AND NOT EXISTS (SELECT 1 FROM backfill_chunks WHERE job_id = %(job_id)s AND status <> 'done')
  AND processed_count + error_count >= coalesce(total_count, 0)
RETURNING *
