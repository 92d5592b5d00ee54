-- Create a backfill job row (status running). Binds: job_id, owner, mode, from_ts, to_ts, batch_size,
-- batch_fixed, concurrency, reprocess, selector (jsonb), config_fingerprint, tool_version, reason, operator.
INSERT INTO backfill_jobs (job_id, owner, mode, from_ts, to_ts, batch_size, batch_fixed, concurrency, status,
                           reprocess, selector, config_fingerprint, tool_version, reason, operator, started_at,
                           heartbeat_at)
VALUES (%(job_id)s, %(owner)s, %(mode)s, %(from_ts)s, %(to_ts)s, %(batch_size)s, %(batch_fixed)s, %(concurrency)s,
        'running', %(reprocess)s, %(selector)s, %(config_fingerprint)s, %(tool_version)s, %(reason)s, %(operator)s,
        now(), now())
RETURNING *
