-- The audit trail tells which job did what: each etl_errors row names the job that recorded it (a backfill
-- job's id, `queue-<id>` for a queued job, `realtime` for the queue worker's process_snapshot path; NULL
-- for rows written before this column existed). The report counts a job's failures from its own rows.
-- A nullable column with no default: no row is rewritten; the lock it needs is brief, and waited for at most
-- 5 s (db init runs every schema file in one transaction, this one last). Binds no parameters. Idempotent.
SET LOCAL lock_timeout = '5s';
ALTER TABLE etl_errors ADD COLUMN IF NOT EXISTS job_id text;
CREATE INDEX IF NOT EXISTS etl_errors_job_id_idx ON etl_errors (job_id, error_type);
