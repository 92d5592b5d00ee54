-- A user's user_artifacts rows for parity. Binds: user_id.
SELECT a.artifact_id, a.level, a.xp, a.extra, a.last_seen, a.source_snapshot_id
FROM user_artifacts AS a
WHERE a.user_id = %(user_id)s
ORDER BY a.artifact_id
