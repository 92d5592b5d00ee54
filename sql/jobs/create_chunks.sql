-- Split a job's range into chunks of about chunk_size wanted snapshots, as contiguous keyset ranges over
-- (created_at, id): chunk k covers (previous chunk's hi, its own hi]; the last one reaches to_ts.
-- Workers go through a chunk newest first, so its checkpoint starts just above its upper bound.
-- Returns the number of wanted snapshots. Binds: job_id, chunk_size and the selector's parameters.
WITH wanted AS (
    SELECT h.created_at, h.id, (row_number() OVER (ORDER BY h.created_at, h.id) - 1) / %(chunk_size)s AS chunk_no,
           count(*) OVER () AS total
    FROM hero_snapshots AS h
    WHERE {% include "jobs/_selector.sql" %}
),
bounds AS (
    SELECT DISTINCT ON (chunk_no) chunk_no, created_at AS hi_created_at, id AS hi_id, total
    FROM wanted
    ORDER BY chunk_no, created_at DESC, id DESC
),
chained AS (
    SELECT b.chunk_no::integer AS chunk_no,
           coalesce(lag(b.hi_created_at) OVER w, %(from_ts)s::timestamptz - interval '1 microsecond') AS lo_created_at,
           coalesce(lag(b.hi_id) OVER w, '00000000-0000-0000-0000-000000000000'::uuid) AS lo_id,
           CASE WHEN lead(b.chunk_no) OVER w IS NULL THEN %(to_ts)s::timestamptz ELSE b.hi_created_at END AS hi_created_at,
           CASE WHEN lead(b.chunk_no) OVER w IS NULL THEN '00000000-0000-0000-0000-000000000000'::uuid ELSE b.hi_id END AS hi_id,
           b.total
    FROM bounds AS b
    WINDOW w AS (ORDER BY b.chunk_no)
),
ins AS (
    INSERT INTO backfill_chunks (job_id, chunk_no, lo_created_at, lo_id, hi_created_at, hi_id,
                                 checkpoint_created_at, checkpoint_id)
    SELECT %(job_id)s, chunk_no, lo_created_at, lo_id, hi_created_at, hi_id,
           hi_created_at + interval '1 microsecond', '00000000-0000-0000-0000-000000000000'::uuid
    FROM chained
    RETURNING 1
),
upd AS (
    UPDATE backfill_jobs SET total_count = coalesce((SELECT max(total) FROM chained), 0), updated_at = now()
    WHERE job_id = %(job_id)s
    RETURNING total_count
)
SELECT (SELECT total_count FROM upd) AS total, (SELECT count(*) FROM ins) AS chunks
