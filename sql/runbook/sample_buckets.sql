-- The dry-run sample across payload-size buckets (runbook, "Dry-run (staging) procedure"): the range's
-- snapshots split by ntile(cardinality(per_bucket)) over size_bytes, then per_bucket[b] of bucket b picked
-- in md5(id || seed) order, which is random-looking but the same for the same seed; the largest snapshot of
-- the range comes first in its (the last) bucket, so the sample always holds the biggest payload (a 2-3 MB
-- one is rare: md5 order alone would almost never pick it). Returns id, created_at, size_bytes, bucket,
-- bucket_min, bucket_max, bucket_count, largest. Binds: from_ts, to_ts, seed (text), per_bucket (integer[]).
WITH sizes AS (
    SELECT h.id, h.created_at, coalesce(h.size_bytes, pg_column_size(h.raw)) AS size_bytes,
           ntile(cardinality(%(per_bucket)s::integer[]))
               OVER (ORDER BY coalesce(h.size_bytes, pg_column_size(h.raw)), h.id) AS bucket,
           row_number() OVER (ORDER BY coalesce(h.size_bytes, pg_column_size(h.raw)) DESC, h.id) = 1 AS largest
    FROM hero_snapshots AS h
    WHERE h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s
),
ranked AS (
    SELECT s.*,
           row_number() OVER (
               PARTITION BY s.bucket ORDER BY s.largest DESC, md5(s.id::text || %(seed)s::text), s.id
           ) AS rn,
           min(s.size_bytes) OVER (PARTITION BY s.bucket) AS bucket_min,
           max(s.size_bytes) OVER (PARTITION BY s.bucket) AS bucket_max,
           count(*) OVER (PARTITION BY s.bucket) AS bucket_count
    FROM sizes AS s
)
SELECT r.id, r.created_at, r.size_bytes, r.bucket, r.bucket_min, r.bucket_max, r.bucket_count, r.largest
FROM ranked AS r
JOIN unnest(%(per_bucket)s::integer[]) WITH ORDINALITY AS b(wanted, bucket) ON b.bucket = r.bucket
WHERE r.rn <= b.wanted
ORDER BY r.bucket, r.rn
