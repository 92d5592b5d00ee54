-- Which database this connection is on, when pg_control_system() is not executable for this role: the
-- database name only (no system identifier). Binds: none.
SELECT NULL::text AS system_identifier, current_database() AS name
