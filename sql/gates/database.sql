-- Which database this connection is on: the server's system identifier (pg_control_system(), executable by
-- any role on PostgreSQL 15 unless an administrator revoked it) and the database name. Binds: none.
SELECT system_identifier::text AS system_identifier, current_database() AS name
FROM pg_control_system()
