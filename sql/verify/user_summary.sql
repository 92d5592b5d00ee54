-- A user's user_profile_summary row for parity. Binds: user_id.
SELECT s.namecode, s.username, s.level, s.pvp_tier, s.top_troops, s.equipped_pet, s.guild_id, s.extra,
       s.last_seen, s.source_snapshot_id
FROM user_profile_summary AS s
WHERE s.user_id = %(user_id)s
