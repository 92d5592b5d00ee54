-- Backfill sessions of one process that block a production session right now: (blocker pid, its state,
-- the blocked pid). Binds: app_prefix (the backfill's application_name prefix, ending in a percent sign), pids (ours).
SELECT DISTINCT b.pid AS blocker, a.state, o.pid AS blocked
  FROM pg_stat_activity o
  CROSS JOIN LATERAL unnest(pg_blocking_pids(o.pid)) AS b(pid)
  JOIN pg_stat_activity a ON a.pid = b.pid
 WHERE o.datname = current_database()
   AND coalesce(o.application_name, '') NOT LIKE %(app_prefix)s
   AND b.pid = ANY(%(pids)s)
