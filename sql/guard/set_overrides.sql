-- Merge threshold overrides into a job's guard_overrides; the new set. Binds: job_id, overrides (jsonb).
UPDATE backfill_jobs SET guard_overrides = guard_overrides || %(overrides)s, updated_at = now()
 WHERE job_id = %(job_id)s
RETURNING guard_overrides
