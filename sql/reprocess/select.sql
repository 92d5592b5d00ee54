-- The snapshots a reprocess job takes, resolved once at job creation: the union of the explicit ids, every
-- snapshot of the namecodes, the unprocessed snapshots with an etl_errors row of one of the error types, and
-- the failed, still unprocessed snapshots in the scope (range, namecodes, ids) of job failed_of; narrowed to
-- [from_ts, to_ts) when those are given. Returns id, created_at, oldest first.
-- Binds: ids (uuid[] or NULL), namecodes (text[] or NULL), error_types (text[] or NULL), failed_of (text or
-- NULL), from_ts, to_ts (timestamptz or NULL).
WITH picked AS (
    SELECT unnest(%(ids)s::uuid[]) AS id
    UNION
    SELECT h.id FROM hero_snapshots AS h WHERE h.namecode = ANY(%(namecodes)s::text[])
    UNION
    SELECT e.snapshot_id
    FROM etl_errors AS e JOIN hero_snapshots AS h ON h.id = e.snapshot_id
    WHERE e.error_type = ANY(%(error_types)s::text[]) AND h.processed_at IS NULL
    UNION
    SELECT h.id
    FROM backfill_jobs AS j JOIN hero_snapshots AS h ON h.created_at >= j.from_ts AND h.created_at < j.to_ts
    WHERE j.job_id = %(failed_of)s AND h.processed_at IS NULL AND h.error_count > 0
      AND (jsonb_typeof(j.selector -> 'namecodes') IS DISTINCT FROM 'array'
           OR j.selector -> 'namecodes' ? h.namecode)
      AND (jsonb_typeof(j.selector -> 'ids') IS DISTINCT FROM 'array' OR j.selector -> 'ids' ? h.id::text)
)
SELECT h.id, h.created_at
FROM picked AS p JOIN hero_snapshots AS h ON h.id = p.id
WHERE (%(from_ts)s::timestamptz IS NULL OR h.created_at >= %(from_ts)s::timestamptz)
  AND (%(to_ts)s::timestamptz IS NULL OR h.created_at < %(to_ts)s::timestamptz)
ORDER BY h.created_at, h.id
