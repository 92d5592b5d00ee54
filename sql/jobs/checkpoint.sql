-- Count a committed batch in the same transaction as its writes: the chunk's checkpoint and counters, the
-- job's counters, and a backfill_batches row. Returns the job status, or no row when this worker no longer
-- owns the chunk or the checkpoint would not move on (down: a chunk is worked newest first) as in a retried
-- commit whose first attempt did commit, its reply lost in a server restart; the caller then rolls the batch back, so nothing is counted twice.
-- Binds: job_id, chunk_no, worker, ck_ts, ck_id, processed, errors, placeholders, rows (jsonb),
-- errors_by_type (jsonb), bytes, rows_total, duration_ms.
WITH c AS (
    UPDATE backfill_chunks
    SET checkpoint_created_at = %(ck_ts)s, checkpoint_id = %(ck_id)s,
        processed_count = processed_count + %(processed)s, error_count = error_count + %(errors)s,
        heartbeat_at = now()
    WHERE job_id = %(job_id)s AND chunk_no = %(chunk_no)s AND worker = %(worker)s AND status = 'running'
      AND (checkpoint_created_at, checkpoint_id) > (%(ck_ts)s::timestamptz, %(ck_id)s::uuid)
    RETURNING 1
),
b AS (
    INSERT INTO backfill_batches (job_id, worker, snapshots, failed, bytes, rows_written, duration_ms)
    SELECT %(job_id)s, %(worker)s, %(processed)s + %(errors)s, %(errors)s, %(bytes)s, %(rows_total)s, %(duration_ms)s
    WHERE EXISTS (SELECT 1 FROM c)
    RETURNING 1
)
UPDATE backfill_jobs AS j
SET processed_count = j.processed_count + %(processed)s,
    error_count = j.error_count + %(errors)s,
    placeholder_count = j.placeholder_count + %(placeholders)s,
    rows_written = (SELECT coalesce(jsonb_object_agg(k.key, coalesce((j.rows_written ->> k.key)::bigint, 0)
                                                      + coalesce((%(rows)s::jsonb ->> k.key)::bigint, 0)), '{}'::jsonb)
                    FROM (SELECT jsonb_object_keys(j.rows_written) UNION SELECT jsonb_object_keys(%(rows)s::jsonb)) AS k(key)),
    errors_by_type = (SELECT coalesce(jsonb_object_agg(k.key, coalesce((j.errors_by_type ->> k.key)::bigint, 0)
                                                        + coalesce((%(errors_by_type)s::jsonb ->> k.key)::bigint, 0)), '{}'::jsonb)
                      FROM (SELECT jsonb_object_keys(j.errors_by_type)
                            UNION SELECT jsonb_object_keys(%(errors_by_type)s::jsonb)) AS k(key)),
    last_checkpoint = jsonb_build_object('created_at', %(ck_ts)s::timestamptz, 'id', %(ck_id)s::uuid,
                                         'chunk', %(chunk_no)s::integer),
    heartbeat_at = now(),
    updated_at = now()
WHERE j.job_id = %(job_id)s AND EXISTS (SELECT 1 FROM c)
RETURNING j.status, j.status_reason
