-- pg_stat_statements totals of the other roles' statements in this database (the backfill's own role
-- excluded): the guard compares their mean time per call between readings. Binds nothing.
SELECT coalesce(sum(calls), 0)::float8 AS calls, coalesce(sum(total_exec_time), 0)::float8 AS total_ms
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
