-- Retention: delete at most `batch` events older than `retain_s` seconds, oldest first (one small
-- transaction; the caller repeats while a full batch was deleted). Binds: retain_s float, batch int.
DELETE FROM etl_events
WHERE id IN (
    SELECT id
    FROM etl_events
    WHERE created_at < now() - make_interval(secs => %(retain_s)s)
    ORDER BY created_at
    LIMIT %(batch)s
)
