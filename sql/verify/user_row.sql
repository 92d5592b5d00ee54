-- One users row for parity. Binds: user_id.
SELECT u.id, u.namecode, u.username
FROM users AS u
WHERE u.id = %(user_id)s
