-- The production guard (starforge_backfill/guard.py): a sampled time series of what it read and decided,
-- per job, and the thresholds an operator changed on a running job (`guard set`). Binds no parameters.
CREATE TABLE IF NOT EXISTS guard_readings (
    id                  bigserial PRIMARY KEY,
    job_id              text NOT NULL,
    taken_at            timestamptz NOT NULL DEFAULT now(),
    probe_ms            double precision,
    baseline_ms         double precision,
    active_sessions     integer,
    waiting_lock        integer,
    waiting_lwlock      integer,
    waiting_io          integer,
    blocked_by_backfill integer,
    dead_tuples         bigint,
    autovacuum_running  boolean,
    wal_bytes_per_s     double precision,
    replica_lag_s       double precision,
    other_mean_ms       double precision,
    other_baseline_ms   double precision,
    state               text NOT NULL,
    reason              text,
    allowed_workers     integer,
    batch_size          integer
);
CREATE INDEX IF NOT EXISTS guard_readings_job_idx ON guard_readings (job_id, taken_at);
-- `guard set KEY=VALUE --job-id J`: thresholds for one job, read by every worker of it on every host.
ALTER TABLE backfill_jobs ADD COLUMN IF NOT EXISTS guard_overrides jsonb NOT NULL DEFAULT '{}'::jsonb;
