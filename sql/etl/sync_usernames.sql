-- Keep user_profile_summary.username equal to users.username for the batch's users (an older snapshot can
-- carry the newest name while a newer one, without a name, owns the summary). Binds no parameters.
UPDATE user_profile_summary AS ps
SET username = u.username
FROM users AS u
WHERE ps.user_id = u.id
  AND u.id IN (SELECT user_id FROM sf_stage_snap WHERE ok)
  AND ps.username IS DISTINCT FROM u.username
