-- `events tail --follow` with events.notify on: wake on the batches' pg_notify (etl/events.sql) instead of
-- polling. Needs a session connection (LISTEN does not pass through PgBouncer in transaction mode).
LISTEN starforge_etl_events
