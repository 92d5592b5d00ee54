-- A user's user_troops rows for parity (several rows per key only if the unique constraint is gone).
-- Binds: user_id.
SELECT t.troop_id, t.amount, t.level, t.rarity, t.fusion_cards, t.traits_owned, t.extra, t.last_seen,
       t.source_snapshot_id
FROM user_troops AS t
WHERE t.user_id = %(user_id)s
ORDER BY t.troop_id
