-- The server settings that decide how a large backfill runs (shared_buffers, max_wal_size in bytes,
-- checkpoint_timeout in seconds) and the current size of the tables its merges probe (heap and indexes).
-- Binds no parameters.
SELECT pg_size_bytes(current_setting('shared_buffers')) AS shared_buffers,
       pg_size_bytes(current_setting('max_wal_size')) AS max_wal_size,
       (SELECT setting::integer FROM pg_settings WHERE name = 'checkpoint_timeout') AS checkpoint_timeout_s,
       (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
        FROM unnest(ARRAY['users', 'user_troops', 'user_pets', 'user_artifacts', 'user_profile_summary']) AS t(name)
        JOIN pg_class AS c ON c.oid = to_regclass(t.name)) AS tables_bytes
