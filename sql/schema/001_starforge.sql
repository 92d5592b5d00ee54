-- Canonical StarForge tables the ETL reads and writes (created only when absent: staging, demos, tests).
-- Binds no parameters. Additions to the canonical model: last_seen and source_snapshot_id on derived rows.
-- The derived per-item tables are keyed by their natural key (user_id, item id), the contract's key, with
-- no surrogate id and no foreign keys: the ETL guarantees that every user and catalog id it writes exists
-- (users are created in the same transaction; catalog ids are placeholders or FK_VIOLATION), `verify`
-- checks for orphans, and measured here the two FK checks plus a second index cost more than half of the
-- merge (docs/DESIGN.md). A production schema that has them keeps them: the ETL works either way.

CREATE TABLE IF NOT EXISTS users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    namecode    text NOT NULL UNIQUE,
    username    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS hero_snapshots (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id               uuid REFERENCES users (id),
    namecode              text,
    source                text,
    raw                   jsonb NOT NULL,
    size_bytes            bigint,
    content_hash          text,
    processing            boolean NOT NULL DEFAULT false,
    processing_started_at timestamptz,
    processed_at          timestamptz,
    error_count           integer NOT NULL DEFAULT 0,
    last_error            jsonb,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hero_snapshots_created_at_id_idx ON hero_snapshots (created_at, id);
CREATE INDEX IF NOT EXISTS hero_snapshots_unprocessed_idx ON hero_snapshots (created_at, id)
    WHERE processed_at IS NULL;
CREATE INDEX IF NOT EXISTS hero_snapshots_user_id_idx ON hero_snapshots (user_id);

CREATE TABLE IF NOT EXISTS troop_catalog (
    id    integer PRIMARY KEY,
    name  text,
    meta  jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE IF NOT EXISTS pet_catalog (
    id    integer PRIMARY KEY,
    name  text,
    meta  jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE IF NOT EXISTS artifact_catalog (
    id    integer PRIMARY KEY,
    name  text,
    meta  jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE IF NOT EXISTS user_troops (
    user_id            uuid NOT NULL,
    troop_id           integer NOT NULL,
    amount             integer NOT NULL DEFAULT 0,
    level              integer NOT NULL DEFAULT 1,
    rarity             integer NOT NULL DEFAULT 0,
    fusion_cards       integer NOT NULL DEFAULT 0,
    traits_owned       integer NOT NULL DEFAULT 0,
    extra              jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_seen          timestamptz NOT NULL,
    source_snapshot_id uuid NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, troop_id)
);

CREATE TABLE IF NOT EXISTS user_pets (
    user_id            uuid NOT NULL,
    pet_id             integer NOT NULL,
    amount             integer NOT NULL DEFAULT 0,
    level              integer NOT NULL DEFAULT 1,
    xp                 bigint NOT NULL DEFAULT 0,
    orb_fusion_cards   integer NOT NULL DEFAULT 0,
    orbs_used          jsonb NOT NULL DEFAULT '[]'::jsonb,
    ascension_level    integer NOT NULL DEFAULT 0,
    extra              jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_seen          timestamptz NOT NULL,
    source_snapshot_id uuid NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, pet_id)
);

CREATE TABLE IF NOT EXISTS user_artifacts (
    user_id            uuid NOT NULL,
    artifact_id        integer NOT NULL,
    level              integer NOT NULL DEFAULT 0,
    xp                 bigint NOT NULL DEFAULT 0,
    extra              jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_seen          timestamptz NOT NULL,
    source_snapshot_id uuid NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, artifact_id)
);

CREATE TABLE IF NOT EXISTS user_profile_summary (
    user_id            uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    namecode           text,
    username           text,
    level              integer,
    top_troops         jsonb NOT NULL DEFAULT '[]'::jsonb,
    equipped_pet       jsonb,
    pvp_tier           integer,
    guild_id           uuid,
    last_seen          timestamptz NOT NULL,
    cached_at          timestamptz NOT NULL DEFAULT now(),
    extra              jsonb NOT NULL DEFAULT '{}'::jsonb,
    source_snapshot_id uuid NOT NULL
);

CREATE TABLE IF NOT EXISTS etl_errors (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    snapshot_id uuid,
    error_type  text NOT NULL,
    message     text,
    details     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS etl_errors_created_at_idx ON etl_errors (created_at);
CREATE INDEX IF NOT EXISTS etl_errors_snapshot_id_idx ON etl_errors (snapshot_id);

CREATE TABLE IF NOT EXISTS queue_jobs (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    type         text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    priority     integer NOT NULL DEFAULT 0,
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 5,
    status       text NOT NULL DEFAULT 'pending',
    run_after    timestamptz NOT NULL DEFAULT now(),
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS queue_jobs_pending_idx ON queue_jobs (status, priority DESC, run_after);
