-- How many snapshots a created_at range holds (preflight: whether its payload-shapes census is exact or
-- sampled), and how many the whole table holds by the planner's estimate (pg_class.reltuples; -1 when the
-- table was never analyzed). Binds: from_ts, to_ts.
SELECT (SELECT count(*) FROM hero_snapshots AS h
        WHERE h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s) AS in_range,
       (SELECT c.reltuples::bigint FROM pg_class AS c WHERE c.oid = 'hero_snapshots'::regclass) AS table_estimate
