-- Store a named consumer's cursor after it was handed events up to last_id. Binds: consumer, last_id.
INSERT INTO etl_event_cursors (consumer, last_id, updated_at)
VALUES (%(consumer)s, %(last_id)s, now())
ON CONFLICT (consumer) DO UPDATE SET last_id = EXCLUDED.last_id, updated_at = EXCLUDED.updated_at
