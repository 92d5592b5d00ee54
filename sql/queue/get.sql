-- One queue_jobs row by id (the admin API's status of a job no worker has created yet). Binds: id (uuid).
SELECT id, type, status, attempts, last_error, created_at, updated_at
FROM queue_jobs
WHERE id = %(id)s
