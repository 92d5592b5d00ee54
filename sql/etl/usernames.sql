-- users.username follows the newest snapshot that has one: record the newest named observation per user
-- (newest wins, ties broken by snapshot id) and copy its name to users when it changed.
-- Binds no parameters.
WITH named AS (
    SELECT DISTINCT ON (user_id) user_id, obs, sid, username
    FROM sf_stage_snap
    WHERE ok AND username IS NOT NULL
    ORDER BY user_id, obs DESC, sid DESC
),
seen AS (
    INSERT INTO backfill_username_seen AS t (user_id, seen_at, snapshot_id, username)
    SELECT user_id, obs, sid, username FROM named ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE
        SET seen_at = EXCLUDED.seen_at, snapshot_id = EXCLUDED.snapshot_id, username = EXCLUDED.username
        WHERE (EXCLUDED.seen_at, EXCLUDED.snapshot_id) > (t.seen_at, t.snapshot_id)
    RETURNING t.user_id, t.username
)
UPDATE users AS u SET username = seen.username, updated_at = now()
FROM seen
WHERE u.id = seen.user_id AND u.username IS DISTINCT FROM seen.username
