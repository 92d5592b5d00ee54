-- Record one failed snapshot: an etl_errors row, and error_count + 1 / last_error on the snapshot, whose
-- processed_at stays as it was; the row names the job that recorded it. Binds: snapshot_id, job_id, error_type,
-- message, details (jsonb).
WITH err AS (
    INSERT INTO etl_errors (snapshot_id, job_id, error_type, message, details)
    VALUES (%(snapshot_id)s, %(job_id)s, %(error_type)s, %(message)s, %(details)s)
    RETURNING created_at
)
UPDATE hero_snapshots
SET error_count = error_count + 1,
    last_error = jsonb_build_object('error_type', %(error_type)s::text, 'message', %(message)s::text,
                                    'at', (SELECT created_at FROM err)),
    processing = false
WHERE id = %(snapshot_id)s
