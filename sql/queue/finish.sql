-- Mark a queue_jobs row done. Binds: id.
UPDATE queue_jobs SET status = 'done', last_error = NULL, updated_at = now() WHERE id = %(id)s
