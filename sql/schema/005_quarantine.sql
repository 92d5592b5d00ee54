-- Where each quarantined snapshot's redacted copy lives: its local file (the source of truth) and, when
-- quarantine.s3_url is set, the S3 object it was uploaded to. `s3_url` NULL: local only (`last_error` says
-- why, NULL while an upload is pending). Written by the uploader after the batch committed, never inside an
-- ETL transaction; `quarantine push` and the report read it across hosts.
CREATE TABLE IF NOT EXISTS quarantine_copies (
    job_id       text        NOT NULL,  -- a backfill job's id, or "realtime" for the queue worker's snapshots
    snapshot_id  uuid        NOT NULL,
    error_type   text,
    local_path   text        NOT NULL,
    s3_url       text,
    uploaded_at  timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, snapshot_id)
);
