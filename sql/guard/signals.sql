-- The production guard's readings, in one round trip (the probe is timed apart, on the same connection).
-- Other sessions: client backends of this database that are not the backfill's (application_name prefix),
-- active ones, and those waiting by wait-event class; how many of them a backfill session blocks
-- (pg_blocking_pids); dead tuples (the largest count among the target tables) and whether autovacuum is
-- running on one of them; the WAL position and the server's transactions so far (all databases; each rate is
-- the difference between two readings); the job's guard overrides. Binds: job_id, app_prefix (our sessions' application_name prefix, ending in a percent sign), tables.
WITH others AS (
    SELECT pid, state, wait_event_type
      FROM pg_stat_activity
     WHERE backend_type = 'client backend'
       AND datname = current_database()
       AND pid <> pg_backend_pid()
       AND coalesce(application_name, '') NOT LIKE %(app_prefix)s
), ours AS (
    SELECT pid FROM pg_stat_activity
     WHERE datname = current_database() AND coalesce(application_name, '') LIKE %(app_prefix)s
)
SELECT
    (SELECT count(*) FROM others WHERE state = 'active')::integer AS active_sessions,
    (SELECT count(*) FROM others WHERE state = 'active' AND wait_event_type = 'Lock')::integer AS waiting_lock,
    (SELECT count(*) FROM others WHERE state = 'active' AND wait_event_type = 'LWLock')::integer AS waiting_lwlock,
    (SELECT count(*) FROM others WHERE state = 'active' AND wait_event_type = 'IO')::integer AS waiting_io,
    (SELECT count(*) FROM others o
      WHERE EXISTS (SELECT 1 FROM unnest(pg_blocking_pids(o.pid)) b(pid) JOIN ours USING (pid)))::integer
        AS blocked_by_backfill,
    (SELECT coalesce(max(n_dead_tup), 0) FROM pg_stat_user_tables
      WHERE relname = ANY(%(tables)s))::bigint AS dead_tuples,
    EXISTS (SELECT 1 FROM pg_stat_progress_vacuum v JOIN pg_class c ON c.oid = v.relid
             WHERE v.datname = current_database() AND c.relname = ANY(%(tables)s)) AS autovacuum_running,
    (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8 AS wal_bytes,
    (SELECT coalesce(sum(xact_commit + xact_rollback), 0) FROM pg_stat_database)::float8 AS xacts,
    (SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication) AS replica_lag_s,
    (SELECT count(*) FROM pg_stat_replication)::integer AS replicas,
    (SELECT guard_overrides FROM backfill_jobs WHERE job_id = %(job_id)s) AS overrides
