-- Catalog coverage of a created_at range, on a bounded scan: up to scan_limit of the range's snapshots
-- (a deterministic spread: ordered by md5 of the id), their Troops/Pets/Artifacts elements (list or keyed
-- form, in a v2 envelope or not) unpacked server-side, and the referenced ids their catalog lacks. One row per kind: kind, scanned
-- (snapshots scanned), in_range (snapshots in the range), missing_ids, snapshots (that reference one),
-- examples (up to 10 missing ids). Binds: from_ts, to_ts, scan_limit.
{% import "etl/_macros.sql" as m %}
WITH picked AS (
    SELECT h.id
    FROM hero_snapshots AS h
    WHERE h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s
    ORDER BY md5(h.id::text)
    LIMIT %(scan_limit)s
),
src AS MATERIALIZED (
    SELECT h.id AS sid, p."Troops" AS troop, p."Pets" AS pet, p."Artifacts" AS artifact
    FROM picked
    JOIN hero_snapshots AS h ON h.id = picked.id
    CROSS JOIN LATERAL (SELECT coalesce(jsonb_typeof(h.raw) = 'object', false) AS is_obj) AS t
    -- contract v2, rule 2: an object with no ProfileData key whose `result` is an object is that object
    CROSS JOIN LATERAL (SELECT CASE WHEN t.is_obj AND NOT h.raw ? 'ProfileData'
                                     AND jsonb_typeof(h.raw -> 'result') = 'object'
                                    THEN h.raw -> 'result' WHEN t.is_obj THEN h.raw END AS obj) AS pl
    LEFT JOIN LATERAL jsonb_to_record(pl.obj) AS x("ProfileData" jsonb) ON true
    LEFT JOIN LATERAL jsonb_to_record(CASE WHEN jsonb_typeof(x."ProfileData") = 'object' THEN x."ProfileData" END)
        AS p("Troops" jsonb, "Pets" jsonb, "Artifacts" jsonb) ON true
),
{% for e in m.ENTITIES %}
{{ ident("ids_" ~ e.name) }} AS (
    SELECT DISTINCT s.sid, (v.id_text)::numeric AS id
    FROM src AS s
    CROSS JOIN LATERAL (
        SELECT NULL::text AS key, a.value
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(s.{{ ident(e.name) }}) = 'array'
                                       THEN s.{{ ident(e.name) }} ELSE '[]'::jsonb END) AS a
        UNION ALL
        SELECT o.key, o.value
        FROM jsonb_each(CASE WHEN jsonb_typeof(s.{{ ident(e.name) }}) = 'object'
                             THEN s.{{ ident(e.name) }} ELSE '{}'::jsonb END) AS o
    ) AS el
    CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(el.value) <> 'object' THEN NULL
                    WHEN jsonb_typeof(el.value -> {{ sqlstr(e.id_field) }}) IN ('number', 'string')
                        THEN el.value ->> {{ sqlstr(e.id_field) }}
                    ELSE el.key END AS id_text
    ) AS v
    WHERE v.id_text ~ '^[0-9]{1,10}(\.0+)?$'
),
{{ ident("missing_" ~ e.name) }} AS (
    SELECT i.sid, i.id::integer AS id
    FROM {{ ident("ids_" ~ e.name) }} AS i
    WHERE i.id BETWEEN 1 AND 2147483647
      AND NOT EXISTS (SELECT 1 FROM {{ ident(e.catalog) }} AS c WHERE c.id = i.id::integer)
),
{% endfor %}
missing AS (
{% for e in m.ENTITIES %}
    {{ "UNION ALL " if not loop.first else "" }}SELECT {{ sqlstr(e.name) }} AS kind, sid, id FROM {{ ident("missing_" ~ e.name) }}
{% endfor %}
)
SELECT k.kind,
       (SELECT count(*) FROM src) AS scanned,
       (SELECT count(*) FROM hero_snapshots AS h
        WHERE h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s) AS in_range,
       count(DISTINCT mi.id) AS missing_ids,
       count(DISTINCT mi.sid) AS snapshots,
       coalesce((array_agg(DISTINCT mi.id ORDER BY mi.id) FILTER (WHERE mi.id IS NOT NULL))[1:10], '{}') AS examples
FROM (VALUES ('troop'), ('pet'), ('artifact')) AS k(kind)
LEFT JOIN missing AS mi ON mi.kind = k.kind
GROUP BY k.kind
ORDER BY k.kind
