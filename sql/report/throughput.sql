-- A job's throughput time series from backfill_batches: batches grouped into about `buckets` equal time
-- buckets (at least one second wide) from the start of the first batch; per bucket the snapshots handled,
-- the failed ones, the batch count and the slowest batch. Empty buckets are absent.
-- Binds: job_id, buckets.
WITH b AS (
    SELECT finished_at, snapshots, failed, duration_ms
    FROM backfill_batches
    WHERE job_id = %(job_id)s
),
w AS (
    SELECT min(finished_at - make_interval(secs => duration_ms / 1000.0)) AS t0,
           greatest(extract(epoch FROM max(finished_at) - min(finished_at - make_interval(secs => duration_ms / 1000.0)))
                    / %(buckets)s, 1.0)::float8 AS width_s
    FROM b
),
g AS (
    SELECT floor(extract(epoch FROM b.finished_at - w.t0) / w.width_s)::integer AS bucket, b.*
    FROM b CROSS JOIN w
)
SELECT g.bucket, w.t0, w.width_s, count(*) AS batches, sum(g.snapshots)::bigint AS snapshots,
       sum(g.failed)::bigint AS failed, max(g.duration_ms) AS max_batch_ms
FROM g CROSS JOIN w
GROUP BY g.bucket, w.t0, w.width_s
ORDER BY g.bucket
