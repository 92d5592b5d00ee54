-- Every recorded gating step (preflight, dry-run, canary, verify) of a config fingerprint, oldest first.
-- Binds: config_fingerprint.
SELECT g.id, g.kind, g.passed, g.job_id, g.from_ts, g.to_ts, g.artifact, g.details, g.created_at
FROM backfill_gates AS g
WHERE g.config_fingerprint = %(config_fingerprint)s
ORDER BY g.created_at, g.id
