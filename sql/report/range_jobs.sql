-- The jobs over a job's snapshots (the job itself, and every job whose created_at range overlaps its range:
-- earlier runs, a canary, a later reprocess), oldest first, each counted by the report's definitions, one
-- expression per definition:
--   handled       snapshots its committed batches took (sum of backfill_batches.snapshots)
--   processed     of those, the ones applied (its batches' snapshots - failed)
--   failed        distinct snapshots with an etl_errors row this job recorded (etl_errors.job_id)
--   error_rows    etl_errors rows this job recorded (a snapshot fails once per job that takes it)
--   placeholders  distinct catalog rows its `placeholders` events list as created
-- Binds: job_id, from_ts, to_ts (NULL range: the job alone).
SELECT j.job_id, j.mode, j.status, j.operator, j.from_ts, j.to_ts, j.created_at, j.finished_at,
       j.processed_count, j.error_count, j.placeholder_count,
       b.handled, b.processed, e.failed, e.error_rows, p.placeholders
FROM backfill_jobs AS j
CROSS JOIN LATERAL (
    SELECT coalesce(sum(x.snapshots), 0)::bigint AS handled, coalesce(sum(x.snapshots - x.failed), 0)::bigint AS processed
    FROM backfill_batches AS x WHERE x.job_id = j.job_id
) AS b
CROSS JOIN LATERAL (
    SELECT count(DISTINCT x.snapshot_id) AS failed, count(*) AS error_rows
    FROM etl_errors AS x WHERE x.job_id = j.job_id
) AS e
CROSS JOIN LATERAL (
    SELECT count(DISTINCT i.value) AS placeholders
    FROM backfill_events AS x
    CROSS JOIN LATERAL jsonb_array_elements(coalesce(x.details -> 'ids', '[]'::jsonb)) AS i
    WHERE x.job_id = j.job_id AND x.kind = 'placeholders'
) AS p
WHERE j.job_id = %(job_id)s
   OR (j.from_ts IS NOT NULL AND j.to_ts IS NOT NULL
       AND %(from_ts)s::timestamptz IS NOT NULL AND %(to_ts)s::timestamptz IS NOT NULL
       AND j.from_ts < %(to_ts)s::timestamptz AND j.to_ts > %(from_ts)s::timestamptz)
ORDER BY j.created_at, j.job_id
