-- Database health for the throttle, in one round trip: connection use (server-wide, as max_connections is),
-- other sessions' long transactions in this database (only they hold back vacuum of its tables), replica
-- lag, and the job's failure rate over a window. Binds: job_id, long_transaction_s, window_s,
-- app_prefix (our own sessions' application_name prefix, excluded from the long-transaction check).
SELECT
    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS connections,
    current_setting('max_connections')::integer AS max_connections,
    (SELECT count(*) FROM pg_stat_activity
      WHERE pid <> pg_backend_pid()
        AND datname = current_database()
        AND xact_start IS NOT NULL
        AND xact_start < now() - make_interval(secs => %(long_transaction_s)s)
        AND coalesce(application_name, '') NOT LIKE %(app_prefix)s) AS long_transactions,
    (SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication) AS replica_lag_s,
    (SELECT count(*) FROM pg_stat_replication) AS replicas,
    (SELECT coalesce(sum(snapshots), 0) FROM backfill_batches
      WHERE job_id = %(job_id)s AND finished_at > now() - make_interval(secs => %(window_s)s)) AS window_snapshots,
    (SELECT coalesce(sum(failed), 0) FROM backfill_batches
      WHERE job_id = %(job_id)s AND finished_at > now() - make_interval(secs => %(window_s)s)) AS window_failed
