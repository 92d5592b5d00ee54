-- The demo's recovery path: newer copies of the newest processed snapshot of `users` users (those whose
-- ProfileData.Troops is an array and under 100 KB), observed one minute apart from from_ts; every `every`-th
-- copy also lists troop `troop_id`, which no catalog has: a FK_VIOLATION under catalog policy `fail`.
-- Returns, per copy, whether it uses that troop. Binds: users, from_ts, troop_id, every.
WITH newest AS (
    SELECT DISTINCT ON (h.user_id) h.user_id, h.namecode, h.raw
    FROM hero_snapshots AS h
    WHERE h.processed_at IS NOT NULL AND h.size_bytes < 100000
      AND jsonb_typeof(h.raw -> 'ProfileData' -> 'Troops') = 'array'
    ORDER BY h.user_id, h.created_at DESC, h.id DESC
),
picked AS (
    SELECT n.*, row_number() OVER (ORDER BY n.user_id) AS k
    FROM newest AS n
    ORDER BY n.user_id
    LIMIT %(users)s
),
copies AS (
    SELECT p.k, p.namecode,
           CASE WHEN mod(p.k, %(every)s) = 0
                THEN jsonb_set(p.raw, '{ProfileData,Troops}', (p.raw #> '{ProfileData,Troops}')
                               || jsonb_build_array(jsonb_build_object('TroopId', %(troop_id)s::integer,
                                                                       'Amount', 3, 'Level', 2)))
                ELSE p.raw END AS raw
    FROM picked AS p
)
INSERT INTO hero_snapshots (namecode, source, raw, size_bytes, created_at)
SELECT c.namecode, 'synthetic', c.raw, octet_length(c.raw::text),
       %(from_ts)s::timestamptz + make_interval(mins => c.k::integer)
FROM copies AS c
RETURNING mod(extract(minute FROM created_at)::integer, %(every)s) = 0 AS uses_missing
