-- Create the users of the staged ok snapshots that do not exist yet (one per namecode), then point every
-- staged snapshot at its user. Two statements in one call; binds no parameters.
INSERT INTO users (namecode)
SELECT DISTINCT namecode FROM sf_stage_snap WHERE ok ORDER BY namecode
ON CONFLICT (namecode) DO NOTHING;

UPDATE sf_stage_snap AS s SET user_id = u.id
FROM users AS u
WHERE u.namecode = s.namecode AND s.ok;
