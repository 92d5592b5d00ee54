-- Runbook "Processed counts": the snapshots in scope, split into processed, failed (not processed, with an
-- etl_errors row or an error count) and neither (still to do). Binds the scope: from_ts, to_ts, namecodes, ids.
SELECT count(*) AS total,
       count(*) FILTER (WHERE h.processed_at IS NOT NULL) AS processed,
       count(*) FILTER (WHERE h.processed_at IS NULL AND (h.error_count > 0 OR EXISTS (
           SELECT 1 FROM etl_errors AS e WHERE e.snapshot_id = h.id))) AS failed,
       count(*) FILTER (WHERE h.processed_at IS NULL AND h.error_count = 0 AND NOT EXISTS (
           SELECT 1 FROM etl_errors AS e WHERE e.snapshot_id = h.id)) AS unaccounted
FROM hero_snapshots AS h
WHERE {% include "verify/_scope.sql" %}
