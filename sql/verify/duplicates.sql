-- Runbook "Uniqueness checks", per table, for the users with a snapshot in scope: keys held by more than
-- one row (at most 50 per table). Binds the scope: from_ts, to_ts, namecodes, ids.
WITH scope_users AS MATERIALIZED (
    SELECT DISTINCT h.user_id
    FROM hero_snapshots AS h
    WHERE {% include "verify/_scope.sql" %}
      AND h.user_id IS NOT NULL
)
(SELECT 'user_troops' AS table_name, jsonb_build_object('user_id', t.user_id, 'troop_id', t.troop_id) AS key,
        count(*) AS n
 FROM user_troops AS t
 WHERE t.user_id IN (SELECT user_id FROM scope_users)
 GROUP BY t.user_id, t.troop_id
 HAVING count(*) > 1
 ORDER BY t.user_id, t.troop_id
 LIMIT 50)
UNION ALL
(SELECT 'user_pets', jsonb_build_object('user_id', p.user_id, 'pet_id', p.pet_id), count(*)
 FROM user_pets AS p
 WHERE p.user_id IN (SELECT user_id FROM scope_users)
 GROUP BY p.user_id, p.pet_id
 HAVING count(*) > 1
 ORDER BY p.user_id, p.pet_id
 LIMIT 50)
UNION ALL
(SELECT 'user_artifacts', jsonb_build_object('user_id', a.user_id, 'artifact_id', a.artifact_id), count(*)
 FROM user_artifacts AS a
 WHERE a.user_id IN (SELECT user_id FROM scope_users)
 GROUP BY a.user_id, a.artifact_id
 HAVING count(*) > 1
 ORDER BY a.user_id, a.artifact_id
 LIMIT 50)
UNION ALL
(SELECT 'user_profile_summary', jsonb_build_object('user_id', s.user_id), count(*)
 FROM user_profile_summary AS s
 WHERE s.user_id IN (SELECT user_id FROM scope_users)
 GROUP BY s.user_id
 HAVING count(*) > 1
 ORDER BY s.user_id
 LIMIT 50)
UNION ALL
(SELECT 'users', jsonb_build_object('namecode', u.namecode), count(*)
 FROM users AS u
 WHERE u.namecode IN (SELECT u2.namecode FROM users AS u2 WHERE u2.id IN (SELECT user_id FROM scope_users))
 GROUP BY u.namecode
 HAVING count(*) > 1
 ORDER BY u.namecode
 LIMIT 50)
