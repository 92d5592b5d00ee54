-- A job's status and reason, cheaply (checked at every batch boundary). Binds: job_id.
SELECT status, status_reason FROM backfill_jobs WHERE job_id = %(job_id)s
