-- Pick the canary's users deterministically: namecodes with snapshots a backfill still wants (never
-- processed, never failed) in the created_at range [from_ts, to_ts), ordered by a hash of the namecode
-- so the pick spreads over the alphabet yet is the same every time. Binds: from_ts, to_ts, seed, limit.
SELECT h.namecode, count(*) AS snapshots
FROM hero_snapshots AS h
WHERE h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s
  AND h.processed_at IS NULL AND h.error_count = 0
  AND h.namecode IS NOT NULL AND h.namecode <> ''
GROUP BY h.namecode
ORDER BY md5(%(seed)s::text || h.namecode), h.namecode
LIMIT %(limit)s
