-- `events tail`: the events after a cursor, oldest first. Binds: after bigint, limit int; with by_job
-- job_id text; with by_event event text.
{% set by_job = by_job | default(false) %}
{% set by_event = by_event | default(false) %}
SELECT id, event, snapshot_id, namecode, job_id, outcome, error_type, duration_ms, rows_written, created_at
FROM etl_events
WHERE id > %(after)s
{% if by_job %}
  AND job_id = %(job_id)s
{% endif %}
{% if by_event %}
  AND event = %(event)s
{% endif %}
ORDER BY id
LIMIT %(limit)s
