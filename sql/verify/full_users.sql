-- verify --full: the next chunk of users to re-derive, in id order after `after` (NULL: from the start), with
-- each user's processed snapshots (n): users are added while the chunk holds fewer than `target` snapshots
-- (a user is never split: all of a user's snapshots are re-derived together), at most `max_users`.
-- With `everything`, every users row (a user with no processed snapshot is checked too: its derived rows
-- are rows no valid snapshot supports); else the users with a processed snapshot in the scope.
-- Binds the scope (from_ts, to_ts, namecodes, ids), after, target, max_users.
WITH u AS (
    SELECT u.id AS user_id,
           (SELECT count(*) FROM hero_snapshots AS p
            WHERE p.user_id = u.id AND p.processed_at IS NOT NULL) AS n
    FROM users AS u
    WHERE (%(after)s::uuid IS NULL OR u.id > %(after)s::uuid)
{% if not everything %}
      AND EXISTS (SELECT 1 FROM hero_snapshots AS h
                  WHERE h.user_id = u.id AND h.processed_at IS NOT NULL AND {% include "verify/_scope.sql" %})
{% endif %}
    ORDER BY u.id
    LIMIT %(max_users)s
),
r AS (
    SELECT user_id, n, sum(n) OVER (ORDER BY user_id) - n AS before FROM u
)
SELECT user_id, n FROM r WHERE before < %(target)s OR before = 0 ORDER BY user_id
