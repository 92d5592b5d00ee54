-- `events tail` without a cursor: the cursor just before the newest `n` matching events (0 when there are
-- fewer). Binds: n int; with by_job job_id text; with by_event event text.
{% set by_job = by_job | default(false) %}
{% set by_event = by_event | default(false) %}
SELECT coalesce(min(id) - 1, (SELECT coalesce(max(id), 0) FROM etl_events)) AS after
FROM (
    SELECT id
    FROM etl_events
    WHERE true
{% if by_job %}
      AND job_id = %(job_id)s
{% endif %}
{% if by_event %}
      AND event = %(event)s
{% endif %}
    ORDER BY id DESC
    LIMIT %(n)s
) AS newest
