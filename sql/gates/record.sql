-- Record the result of a gating step, bound to the database it ran against and the concurrency it approved.
-- Binds: kind, config_fingerprint, passed, job_id, from_ts, to_ts, artifact, details (jsonb),
-- db_system_identifier, db_name, concurrency.
INSERT INTO backfill_gates (
    kind, config_fingerprint, passed, job_id, from_ts, to_ts, artifact, details,
    db_system_identifier, db_name, concurrency
)
VALUES (
    %(kind)s, %(config_fingerprint)s, %(passed)s, %(job_id)s, %(from_ts)s, %(to_ts)s, %(artifact)s, %(details)s,
    %(db_system_identifier)s, %(db_name)s, %(concurrency)s
)
RETURNING id, created_at
