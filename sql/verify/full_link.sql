-- verify --full: point each staged ok snapshot at the user of its namecode, as etl/users.sql does (without
-- creating any: a namecode with no users row keeps user_id NULL, and full_diff.sql reports it).
-- Binds no parameters.
UPDATE sf_stage_snap AS s SET user_id = u.id
FROM users AS u
WHERE u.namecode = s.namecode AND s.ok
