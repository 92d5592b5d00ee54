-- Runbook "Summary generation validation": users with a processed snapshot in scope and no
-- user_profile_summary row; the count and the first ones. Binds the scope (from_ts, to_ts, namecodes, ids)
-- and limit.
WITH scope_users AS MATERIALIZED (
    SELECT DISTINCT h.user_id
    FROM hero_snapshots AS h
    WHERE {% include "verify/_scope.sql" %}
      AND h.processed_at IS NOT NULL AND h.user_id IS NOT NULL
),
missing AS (
    SELECT s.user_id, u.namecode
    FROM scope_users AS s
    LEFT JOIN users AS u ON u.id = s.user_id
    WHERE NOT EXISTS (SELECT 1 FROM user_profile_summary AS ups WHERE ups.user_id = s.user_id)
)
SELECT (SELECT count(*) FROM scope_users) AS users,
       (SELECT count(*) FROM missing) AS missing,
       coalesce((SELECT jsonb_agg(jsonb_build_object('user_id', m.user_id, 'namecode', m.namecode)
                                  ORDER BY m.namecode)
                 FROM (SELECT * FROM missing ORDER BY namecode LIMIT %(limit)s) AS m), '[]'::jsonb) AS first_missing
