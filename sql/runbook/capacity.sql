-- Connection capacity: max_connections, connections in use (client backends), superuser_reserved_connections.
-- Binds no parameters.
SELECT current_setting('max_connections')::integer AS max_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use,
       current_setting('superuser_reserved_connections')::integer AS reserved
