-- The guard's readings keep the server's transaction rate (all databases, the backfill's own included): the
-- probe's latency counts only while production traffic is there to be hurt (throttle.probe_min_tps).
-- A nullable column with no default: no row is rewritten. Binds no parameters. Idempotent.
SET LOCAL lock_timeout = '5s';
ALTER TABLE guard_readings ADD COLUMN IF NOT EXISTS xacts_per_s double precision;
