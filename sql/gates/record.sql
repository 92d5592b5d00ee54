-- Record the result of a gating step. Binds: kind, config_fingerprint, passed, job_id, from_ts, to_ts,
-- artifact, details (jsonb).
INSERT INTO backfill_gates (kind, config_fingerprint, passed, job_id, from_ts, to_ts, artifact, details)
VALUES (%(kind)s, %(config_fingerprint)s, %(passed)s, %(job_id)s, %(from_ts)s, %(to_ts)s, %(artifact)s, %(details)s)
RETURNING id, created_at
