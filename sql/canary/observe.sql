-- One canary observation, in one round trip: client connections against max_connections (ours counted
-- apart), other sessions' transactions in this database older than the long-transaction threshold,
-- replica lag, and the canary job's counters and batch latency (from backfill_batches).
-- Binds: job_id (NULL before the job exists), long_transaction_s, app_prefix (our application_name
-- prefix followed by a LIKE wildcard).
WITH act AS (
    SELECT pid, datname, application_name, xact_start
    FROM pg_stat_activity
    WHERE backend_type = 'client backend'
),
others AS (
    SELECT now() - xact_start AS age
    FROM act
    WHERE pid <> pg_backend_pid()
      AND datname = current_database()
      AND xact_start IS NOT NULL
      AND coalesce(application_name, '') NOT LIKE %(app_prefix)s
),
batches AS (
    SELECT count(*) AS batches,
           coalesce(sum(snapshots), 0) AS batch_snapshots,
           coalesce(sum(failed), 0) AS batch_failed,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_batch_ms,
           max(duration_ms) AS max_batch_ms
    FROM backfill_batches
    WHERE job_id = %(job_id)s
)
SELECT
    (SELECT count(*) FROM act) AS connections,
    (SELECT count(*) FROM act WHERE coalesce(application_name, '') LIKE %(app_prefix)s) AS own_connections,
    current_setting('max_connections')::integer AS max_connections,
    (SELECT count(*) FROM others WHERE age > make_interval(secs => %(long_transaction_s)s)) AS long_transactions,
    (SELECT coalesce(max(extract(epoch FROM age)), 0)::float8 FROM others) AS oldest_other_transaction_s,
    (SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication) AS replica_lag_s,
    (SELECT count(*) FROM pg_stat_replication) AS replicas,
    j.status AS job_status,
    j.status_reason AS job_status_reason,
    j.total_count,
    j.processed_count,
    j.error_count,
    b.batches,
    b.batch_snapshots,
    b.batch_failed,
    b.p95_batch_ms::float8 AS p95_batch_ms,
    b.max_batch_ms
FROM batches AS b
LEFT JOIN backfill_jobs AS j ON j.job_id = %(job_id)s
