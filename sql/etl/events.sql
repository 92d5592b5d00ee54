-- The batch's events (issue 17), in the transaction that commits its outcomes: one snapshot_processed row
-- per applied snapshot (the staged ok rows) and one snapshot_failed row per failure (bound as arrays), in
-- one INSERT ... SELECT. rows_written: the entity and summary rows whose source is that snapshot and that
-- this transaction wrote (the merges set updated_at / cached_at to now(), the transaction's start time).
-- duration_ms: the batch's apply time divided among its snapshots (bound). With notify, one pg_notify per
-- batch carrying the highest id (never one per row). Binds: failed_ids uuid[], failed_types text[],
-- job_id text, duration_ms float. Context: staged (false when no staging table was filled: a failure
-- recorded after the batch's transaction was rolled back), notify.
{% import "etl/_macros.sql" as m %}
{% set staged = staged | default(true) %}
{% set notify = notify | default(false) %}
WITH
{% if staged %}
batch_users AS MATERIALIZED (
    SELECT array_agg(DISTINCT user_id) AS ids FROM sf_stage_snap WHERE ok
),
written AS (
    SELECT w.sid, sum(w.n)::integer AS n
    FROM (
{% for e in m.ENTITIES %}
        SELECT t.source_snapshot_id AS sid, count(*) AS n
        FROM {{ ident(e.table) }} AS t
        WHERE t.user_id = ANY ((SELECT ids FROM batch_users)::uuid[]) AND t.updated_at = now()
        GROUP BY 1
        UNION ALL
{% endfor %}
        SELECT t.source_snapshot_id, count(*)
        FROM user_profile_summary AS t
        WHERE t.user_id = ANY ((SELECT ids FROM batch_users)::uuid[]) AND t.cached_at = now()
        GROUP BY 1
    ) AS w
    GROUP BY w.sid
),
{% endif %}
ins AS (
    INSERT INTO etl_events (event, snapshot_id, namecode, job_id, outcome, error_type, duration_ms, rows_written)
{% if staged %}
    SELECT 'snapshot_processed', s.sid, s.namecode, %(job_id)s::text, 'applied', NULL,
           %(duration_ms)s::double precision, coalesce(w.n, 0)
    FROM sf_stage_snap AS s
    LEFT JOIN written AS w ON w.sid = s.sid
    WHERE s.ok
    UNION ALL
{% endif %}
    SELECT 'snapshot_failed', f.sid, h.namecode, %(job_id)s::text, 'failed', f.error_type,
           %(duration_ms)s::double precision, 0
    FROM unnest(%(failed_ids)s::uuid[], %(failed_types)s::text[]) AS f(sid, error_type)
    LEFT JOIN hero_snapshots AS h ON h.id = f.sid
    RETURNING id
)
SELECT count(*) AS events, max(id) AS last_id
{%- if notify %},
       CASE WHEN max(id) IS NOT NULL THEN pg_notify('starforge_etl_events', max(id)::text) END AS notified
{%- endif %}

FROM ins
