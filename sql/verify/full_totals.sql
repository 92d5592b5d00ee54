-- verify --full: how many users and processed snapshots the check re-derives (for progress and the summary).
-- Binds the scope (from_ts, to_ts, namecodes, ids); `everything` as in full_users.sql.
SELECT count(*) AS users, coalesce(sum(n), 0)::bigint AS snapshots
FROM (
    SELECT (SELECT count(*) FROM hero_snapshots AS p
            WHERE p.user_id = u.id AND p.processed_at IS NOT NULL) AS n
    FROM users AS u
{% if not everything %}
    WHERE EXISTS (SELECT 1 FROM hero_snapshots AS h
                  WHERE h.user_id = u.id AND h.processed_at IS NOT NULL AND {% include "verify/_scope.sql" %})
{% endif %}
) AS t
