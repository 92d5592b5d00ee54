-- Whether pg_stat_statements is installed in this database and loaded (its view answers). Binds nothing.
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')
   AND position('pg_stat_statements' IN current_setting('shared_preload_libraries')) > 0 AS available
