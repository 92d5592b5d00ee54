-- A user's user_pets rows for parity. Binds: user_id.
SELECT p.pet_id, p.amount, p.level, p.xp, p.orb_fusion_cards, p.orbs_used, p.ascension_level, p.extra,
       p.last_seen, p.source_snapshot_id
FROM user_pets AS p
WHERE p.user_id = %(user_id)s
ORDER BY p.pet_id
