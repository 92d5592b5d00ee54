-- Workers holding running chunks of a job (to find dead local workers). Binds: job_id.
SELECT DISTINCT worker FROM backfill_chunks WHERE job_id = %(job_id)s AND status = 'running' AND worker IS NOT NULL
