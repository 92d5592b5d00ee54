-- The backlog a canary can take from: snapshots a backfill still wants (never processed, never failed),
-- optionally only those of some namecodes. Returns their count and oldest/newest created_at.
-- Binds: namecodes (text[] or NULL for every namecode).
SELECT count(*) AS wanted, min(h.created_at) AS oldest, max(h.created_at) AS newest
FROM hero_snapshots AS h
WHERE h.processed_at IS NULL AND h.error_count = 0
  AND (%(namecodes)s::text[] IS NULL OR h.namecode = ANY(%(namecodes)s::text[]))
