-- Remove sensitive keys from the rows stage.sql staged from the table (contract: any object key containing
-- token, password, passwd, secret, session or auth, in any case, at any depth), as the reference path
-- would. Per entity, one regex per snapshot over the text of its staged extras (and OrbsUsed) finds the
-- snapshots that mention such a word at all; only their values that do are walked and rewritten. Binds no
-- parameters; returns the number of staged rows rewritten.
-- Run as its own statement after the stage: inside stage.sql these steps were a third pass over the
-- validated elements plus a lookup per staged row, about a fifth of that statement's instructions; here they
-- are a scan of the staging tables (text and regex) and two cheap passes (a hashed sid check per row), and
-- they write only the few rows they clean.
{% import "etl/_macros.sql" as m %}
WITH RECURSIVE
{% for e in m.ENTITIES %}
{% set st = ident("sf_stage_" ~ e.name) %}
{{ e.name }}_scan AS MATERIALIZED (
    SELECT f.sid
    FROM {{ st }} AS f
    GROUP BY f.sid
    HAVING string_agg(f.extra::text
{%- for jf, col in e.arrays %} || coalesce(f.{{ ident(col) }}::text, ''){% endfor %}, '') ~ {{ sqlstr(m.SENSITIVE_RE) }}
),
-- Every key and array item below the values that mention a sensitive word, with its path (recursive).
{{ e.name }}_walk (sid, ord, col, path, v) AS (
    SELECT f.sid, f.ord, 'extra', ARRAY[]::text[], f.extra
    FROM {{ st }} AS f
    WHERE CASE WHEN f.sid IN (SELECT s.sid FROM {{ e.name }}_scan AS s)  -- CASE: the regex only for those
               THEN f.extra::text ~ {{ sqlstr(m.SENSITIVE_RE) }} ELSE false END
{% for jf, col in e.arrays %}
    UNION ALL
    SELECT f.sid, f.ord, {{ sqlstr(col) }}, ARRAY[]::text[], f.{{ ident(col) }}
    FROM {{ st }} AS f
    WHERE CASE WHEN f.sid IN (SELECT s.sid FROM {{ e.name }}_scan AS s)
               THEN f.{{ ident(col) }}::text ~ {{ sqlstr(m.SENSITIVE_RE) }} ELSE false END
{% endfor %}
    UNION ALL
    SELECT w.sid, w.ord, w.col, w.path || c.k, c.v
    FROM {{ e.name }}_walk AS w
    CROSS JOIN LATERAL (
        SELECT o.key, o.value FROM jsonb_each(CASE WHEN jsonb_typeof(w.v) = 'object' THEN w.v END) AS o
        UNION ALL
        SELECT (a.n - 1)::text, a.value
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(w.v) = 'array' THEN w.v END) WITH ORDINALITY AS a(value, n)
    ) AS c(k, v)
),
-- The sensitive keys' paths (an array index is digits only, so it never matches), numbered per value.
{{ e.name }}_del AS MATERIALIZED (
    SELECT w.sid, w.ord, w.col, w.path,
           row_number() OVER (PARTITION BY w.sid, w.ord, w.col ORDER BY w.path) AS n
    FROM {{ e.name }}_walk AS w
    WHERE cardinality(w.path) > 0 AND w.path[cardinality(w.path)] ~ {{ sqlstr(m.SENSITIVE_RE) }}
),
-- Remove them one path at a time (removing a key never moves an array item; a path below a removed key
-- is then absent, and #- leaves the value as it is).
{{ e.name }}_fold (sid, ord, col, n, v) AS (
    SELECT w.sid, w.ord, w.col, 0::bigint, w.v FROM {{ e.name }}_walk AS w WHERE cardinality(w.path) = 0
    UNION ALL
    SELECT x.sid, x.ord, x.col, d.n, x.v #- d.path
    FROM {{ e.name }}_fold AS x
    JOIN {{ e.name }}_del AS d ON d.sid = x.sid AND d.ord = x.ord AND d.col = x.col AND d.n = x.n + 1
),
{{ e.name }}_clean AS MATERIALIZED (
    SELECT DISTINCT ON (x.sid, x.ord, x.col) x.sid, x.ord, x.col, x.v
    FROM {{ e.name }}_fold AS x
    ORDER BY x.sid, x.ord, x.col, x.n DESC
),
{{ e.name }}_upd AS (
    UPDATE {{ st }} AS t
    SET extra = coalesce((SELECT c.v FROM {{ e.name }}_clean AS c
                          WHERE c.sid = t.sid AND c.ord = t.ord AND c.col = 'extra'), t.extra)
{% for jf, col in e.arrays %}
      , {{ ident(col) }} = coalesce((SELECT c.v FROM {{ e.name }}_clean AS c
                                     WHERE c.sid = t.sid AND c.ord = t.ord AND c.col = {{ sqlstr(col) }}),
                                    t.{{ ident(col) }})
{% endfor %}
    WHERE CASE WHEN t.sid IN (SELECT s.sid FROM {{ e.name }}_scan AS s)
               THEN (t.sid, t.ord) IN (SELECT c.sid, c.ord FROM {{ e.name }}_clean AS c) ELSE false END
    RETURNING 1
),
{% endfor %}
counted AS (
{% for e in m.ENTITIES %}
    {{ "UNION ALL " if not loop.first else "" }}SELECT count(*) AS n FROM {{ e.name }}_upd
{% endfor %}
)
SELECT sum(n)::bigint AS cleaned FROM counted
