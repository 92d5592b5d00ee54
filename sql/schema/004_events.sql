-- The ETL's event outbox (issue 17): one row per snapshot outcome, written in the same transaction as that
-- outcome (sql/etl/events.sql), read by consumers with a cursor (`events tail`), pruned in small batches
-- after `events.retain` (sql/events/prune.sql). Idempotent: `db init` applies it on every run.
CREATE TABLE IF NOT EXISTS etl_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- the cursor: consumers read id > cursor
    event        text NOT NULL CHECK (event IN ('snapshot_processed', 'snapshot_failed')),
    snapshot_id  uuid NOT NULL,
    namecode     text,
    job_id       text,          -- the backfill job, 'realtime' for process_snapshot queue jobs, NULL for dry-run
    outcome      text NOT NULL CHECK (outcome IN ('applied', 'failed')),
    error_type   text,          -- the etl_errors error type of a failed snapshot
    duration_ms  double precision NOT NULL,  -- the batch's apply time divided among its snapshots
    rows_written integer NOT NULL DEFAULT 0, -- entity and summary rows this snapshot wrote
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- retention deletes the oldest rows by created_at, a few at a time
CREATE INDEX IF NOT EXISTS etl_events_created_idx ON etl_events (created_at);

-- a named consumer's position: the last event id it was handed (`events tail --consumer NAME`)
CREATE TABLE IF NOT EXISTS etl_event_cursors (
    consumer   text PRIMARY KEY,
    last_id    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
