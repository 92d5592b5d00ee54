-- A named consumer's stored cursor (no row: a new consumer). Binds: consumer text.
SELECT last_id FROM etl_event_cursors WHERE consumer = %(consumer)s
