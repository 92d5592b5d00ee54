-- One quarantine copy's upload state (the uploader, after the batch committed; `quarantine push`).
INSERT INTO quarantine_copies AS q
    (job_id, snapshot_id, error_type, local_path, s3_url, uploaded_at, attempts, last_error, updated_at)
VALUES (
    %(job_id)s, %(snapshot_id)s, %(error_type)s, %(local_path)s, %(s3_url)s,
    %(uploaded_at)s::timestamptz, %(attempts)s, %(last_error)s, now()
)
ON CONFLICT (job_id, snapshot_id) DO UPDATE SET
    error_type = coalesce(EXCLUDED.error_type, q.error_type),
    local_path = EXCLUDED.local_path,
    s3_url = EXCLUDED.s3_url,
    uploaded_at = EXCLUDED.uploaded_at,
    attempts = q.attempts + EXCLUDED.attempts,
    last_error = EXCLUDED.last_error,
    updated_at = now()
