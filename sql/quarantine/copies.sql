-- The recorded quarantine copies of one job, by snapshot.
SELECT snapshot_id, error_type, local_path, s3_url, uploaded_at, attempts, last_error, updated_at
FROM quarantine_copies
WHERE job_id = %(job_id)s
ORDER BY snapshot_id
