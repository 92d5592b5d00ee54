-- Cut short a backfill batch that blocks production: cancel the statement of our own session, or end the
-- session when it sits idle in its transaction (a cancel does not reach it). Binds: pid, terminate.
SELECT CASE WHEN %(terminate)s THEN pg_terminate_backend(%(pid)s) ELSE pg_cancel_backend(%(pid)s) END
