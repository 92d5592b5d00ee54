-- finalize (issue 16 part 4): when a job was finalized (verify --full passed or was overridden, its folder
-- archived) and by whom. NULL until then. Idempotent.
ALTER TABLE backfill_jobs ADD COLUMN IF NOT EXISTS finalized_at timestamptz;
ALTER TABLE backfill_jobs ADD COLUMN IF NOT EXISTS finalized_by text;
