-- Record the throttle state on a job (NULL when healthy). Binds: job_id, state.
UPDATE backfill_jobs SET throttle_state = %(state)s, updated_at = now()
WHERE job_id = %(job_id)s AND throttle_state IS DISTINCT FROM %(state)s
