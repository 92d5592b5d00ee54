-- The toolkit's own tables: jobs, chunks (keyset ranges claimed with SKIP LOCKED), events, username recency.
-- Binds no parameters. Idempotent.
CREATE TABLE IF NOT EXISTS backfill_jobs (
    job_id             text PRIMARY KEY,
    owner              text,
    mode               text NOT NULL DEFAULT 'run',
    from_ts            timestamptz,
    to_ts              timestamptz,
    batch_size         integer NOT NULL,
    concurrency        integer NOT NULL DEFAULT 1,
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'running', 'paused', 'failed', 'done')),
    processed_count    bigint NOT NULL DEFAULT 0,
    error_count        bigint NOT NULL DEFAULT 0,
    total_count        bigint,
    placeholder_count  bigint NOT NULL DEFAULT 0,
    rows_written       jsonb NOT NULL DEFAULT '{}'::jsonb,
    errors_by_type     jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_checkpoint    jsonb,
    reprocess          boolean NOT NULL DEFAULT false,
    selector           jsonb NOT NULL DEFAULT '{}'::jsonb,
    config_fingerprint text,
    tool_version       text,
    reason             text,
    status_reason      text,
    throttle_state     text,
    heartbeat_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS backfill_jobs_status_idx ON backfill_jobs (status, created_at DESC);

CREATE TABLE IF NOT EXISTS backfill_chunks (
    job_id          text NOT NULL REFERENCES backfill_jobs (job_id) ON DELETE CASCADE,
    chunk_no        integer NOT NULL,
    lo_created_at   timestamptz NOT NULL,
    lo_id           uuid NOT NULL,
    hi_created_at   timestamptz NOT NULL,
    hi_id           uuid NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done')),
    checkpoint_created_at timestamptz,
    checkpoint_id   uuid,
    processed_count bigint NOT NULL DEFAULT 0,
    error_count     bigint NOT NULL DEFAULT 0,
    worker          text,
    claimed_at      timestamptz,
    heartbeat_at    timestamptz,
    finished_at     timestamptz,
    PRIMARY KEY (job_id, chunk_no)
);
CREATE INDEX IF NOT EXISTS backfill_chunks_claim_idx ON backfill_chunks (job_id, status, chunk_no);

CREATE TABLE IF NOT EXISTS backfill_events (
    id         bigserial PRIMARY KEY,
    job_id     text,
    kind       text NOT NULL,
    message    text,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS backfill_events_job_idx ON backfill_events (job_id, created_at);

CREATE TABLE IF NOT EXISTS backfill_batches (
    id              bigserial PRIMARY KEY,
    job_id          text NOT NULL,
    worker          text,
    snapshots       integer NOT NULL,
    failed          integer NOT NULL,
    bytes           bigint NOT NULL,
    rows_written    integer NOT NULL,
    duration_ms     integer NOT NULL,
    finished_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS backfill_batches_job_idx ON backfill_batches (job_id, finished_at);

-- Which snapshot last set users.username: "username follows the newest snapshot that has one"
-- must hold whatever order snapshots are processed in.
CREATE TABLE IF NOT EXISTS backfill_username_seen (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    seen_at     timestamptz NOT NULL,
    snapshot_id uuid NOT NULL,
    username    text NOT NULL
);

-- Results of the runbook's gating steps (preflight, dry-run, canary), per config fingerprint: `run` refuses
-- to start without a passing preflight and canary for the same fingerprint unless --force --reason.
CREATE TABLE IF NOT EXISTS backfill_gates (
    id                 bigserial PRIMARY KEY,
    kind               text NOT NULL,
    config_fingerprint text NOT NULL,
    passed             boolean NOT NULL,
    job_id             text,
    from_ts            timestamptz,
    to_ts              timestamptz,
    artifact           text,
    details            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS backfill_gates_lookup_idx ON backfill_gates (kind, config_fingerprint, created_at DESC);

-- Who did it: the operator of each job and event (--operator, $STARFORGE_OPERATOR, else user@host; a queue
-- job's payload owner). Added after the tables above first shipped, hence ALTER ... IF NOT EXISTS.
ALTER TABLE backfill_jobs ADD COLUMN IF NOT EXISTS operator text;
ALTER TABLE backfill_events ADD COLUMN IF NOT EXISTS operator text;
-- `--batch-size N` fixes a job's batches at N (only the byte cap cuts one shorter); without it they adapt.
ALTER TABLE backfill_jobs ADD COLUMN IF NOT EXISTS batch_fixed boolean NOT NULL DEFAULT false;
-- A gate is bound to its scope: the database it ran against (server system identifier + database name; a
-- clone or restore carries the rows to a database where they prove nothing) and the concurrency it approved.
ALTER TABLE backfill_gates ADD COLUMN IF NOT EXISTS db_system_identifier text;
ALTER TABLE backfill_gates ADD COLUMN IF NOT EXISTS db_name text;
ALTER TABLE backfill_gates ADD COLUMN IF NOT EXISTS concurrency integer;
