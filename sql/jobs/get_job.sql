-- One job row. Binds: job_id.
SELECT * FROM backfill_jobs WHERE job_id = %(job_id)s
