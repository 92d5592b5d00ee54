-- The census of a created_at range (runbook step `census`): every snapshot of the range (or of a
-- TABLESAMPLE SYSTEM sample of the table's blocks, when sampled) classified once by the snapshot contract's
-- v2 rules, then counted per month (UTC) and in total, in one statement; no payload leaves the server.
-- Per snapshot (CTE snap, one row each, scalars and key arrays only):
--   form: object | double_encoded (a jsonb string whose text is a JSON object) | string | array | number |
--         boolean | null;
--   envelope: enveloped (no ProfileData key and an object `result`, rule 2) | bare, for object payloads;
--   verdict, the first failure the ETL would raise, in its order: not_object, api_error (no ProfileData
--         key and an `error` key), no_profile_data (no ProfileData key), profile_data_not_object,
--         no_namecode, invalid_section (Troops, Pets or Artifacts neither an array, an object nor null);
--         else ok;
--   where the namecode, display name and guild name come from, and each section's form (array, keyed,
--         absent, invalid), for the snapshots with an object ProfileData;
--   size: size_bytes, else the length of the jsonb text;
--   the unknown top-level keys (not NameCode, Name, ProfileData; API error bodies left out) and unknown
--         ProfileData keys, each counted once per snapshot, cut to 64 characters, and a sensitive key
--         (sensitive_re) as [REDACTED], never by name.
-- Returns rows (month, total, dim, value, n): month is the UTC month (NULL on the totals' rows, total true);
-- dim is one of the classifications above (value: its class, n: snapshots), 'size' (value: snapshots,
-- min_bytes, p50_bytes, p95_bytes, max_bytes (nearest rank), over_big, size_from_column; n: the figure), or
-- top_key / profile_key (value: the key, n: snapshots holding it; the `top` most common per month and in
-- total, ties by key).
-- Binds: from_ts, to_ts, big_bytes (bigint), top (int), sensitive_re (text); when sampled: percent
-- (float8), seed (int).
-- Each level below is a subquery fenced with OFFSET 0, so that its expressions are computed once per
-- snapshot and handed up: without the fences the planner copies an expression into every place that uses
-- it, or puts a Memoize (hashing whole payloads) before each LATERAL step; measured, 15 ms a snapshot.
WITH snap AS MATERIALIZED (
    SELECT l5.month,
           coalesce(l5.size_bytes, octet_length(l5.doc::text)) AS size_bytes,
           l5.size_bytes IS NOT NULL AS size_from_column,
           l5.form,
           CASE WHEN l5.obj IS NOT NULL THEN CASE WHEN l5.enveloped THEN 'enveloped' ELSE 'bare' END END AS envelope,
           -- rules 3 and 4, then the namecode, then the sections: the first failure the ETL would record
           CASE WHEN l5.p IS NULL THEN 'not_object'
                WHEN NOT l5.has_pd AND l5.p ? 'error' THEN 'api_error'
                WHEN NOT l5.has_pd THEN 'no_profile_data'
                WHEN NOT l5.parsed THEN 'profile_data_not_object'
                WHEN l5.namecode = 'none' THEN 'no_namecode'
                WHEN 'invalid' IN (l5.troops, l5.pets, l5.artifacts) THEN 'invalid_section'
                ELSE 'ok' END AS verdict,
           CASE WHEN l5.parsed THEN l5.namecode END AS namecode,
           CASE WHEN l5.parsed THEN l5.name END AS name,
           CASE WHEN l5.parsed THEN l5.guild END AS guild,
           CASE WHEN l5.parsed THEN l5.troops END AS troops,
           CASE WHEN l5.parsed THEN l5.pets END AS pets,
           CASE WHEN l5.parsed THEN l5.artifacts END AS artifacts,
           CASE WHEN l5.p IS NOT NULL AND (l5.has_pd OR NOT l5.p ? 'error') THEN
               ARRAY(SELECT DISTINCT CASE WHEN k.key ~ %(sensitive_re)s THEN '[REDACTED]' ELSE left(k.key, 64) END
                     FROM jsonb_object_keys(l5.p) AS k(key)
                     WHERE k.key <> ALL (ARRAY['NameCode', 'Name', 'ProfileData']))
           END AS top_keys,
           CASE WHEN l5.parsed THEN
               ARRAY(SELECT DISTINCT CASE WHEN k.key ~ %(sensitive_re)s THEN '[REDACTED]' ELSE left(k.key, 64) END
                     FROM jsonb_object_keys(l5.pd) AS k(key)
                     WHERE k.key <> ALL (ARRAY['NameCode', 'Name', 'Level', 'PvpTier', 'Troops', 'Pets',
                                               'Artifacts', 'EquippedPet', 'Guild', 'GuildName']))
           END AS profile_keys
    FROM (
        -- rules 5-7 and the sections' forms (absent and null alike: no rows)
        SELECT l4.*,
               coalesce(jsonb_typeof(l4.pd) = 'object', false) AS parsed,
               CASE WHEN jsonb_typeof(l4.p -> 'NameCode') = 'string' AND l4.p ->> 'NameCode' <> '' THEN 'payload'
                    WHEN jsonb_typeof(l4.pd -> 'NameCode') = 'string' AND l4.pd ->> 'NameCode' <> '' THEN 'profile_data'
                    WHEN l4.col_namecode <> '' THEN 'column'
                    ELSE 'none' END AS namecode,
               CASE WHEN jsonb_typeof(l4.p -> 'Name') = 'string' THEN 'payload'
                    WHEN jsonb_typeof(l4.pd -> 'Name') = 'string' THEN 'profile_data'
                    ELSE 'none' END AS name,
               CASE WHEN jsonb_typeof(l4.pd -> 'Guild' -> 'Name') = 'string' THEN 'guild'
                    WHEN jsonb_typeof(l4.pd -> 'GuildName') = 'string' THEN 'guild_name'
                    ELSE 'none' END AS guild,
{% for section in ("Troops", "Pets", "Artifacts") %}
               CASE coalesce(jsonb_typeof(l4.pd -> {{ sqlstr(section) }}), 'null')
                    WHEN 'array' THEN 'array' WHEN 'object' THEN 'keyed' WHEN 'null' THEN 'absent'
                    ELSE 'invalid' END AS {{ ident(section | lower) }}{{ "," if not loop.last else "" }}
{% endfor %}
        FROM (
            SELECT l3.*, l3.p ? 'ProfileData' AS has_pd,
                   CASE WHEN jsonb_typeof(l3.p -> 'ProfileData') = 'object' THEN l3.p -> 'ProfileData' END AS pd
            FROM (
                -- rule 2, the envelope: no ProfileData key and an object `result`: that object is the payload
                SELECT l2.*, CASE WHEN l2.enveloped THEN l2.obj -> 'result' ELSE l2.obj END AS p
                FROM (
                    SELECT l1.*,
                           CASE WHEN l1.top = 'object' THEN l1.doc ELSE l1.inner_doc END AS obj,
                           CASE WHEN l1.top = 'object' THEN 'object'
                                WHEN l1.inner_doc IS NOT NULL THEN 'double_encoded'
                                ELSE coalesce(l1.top, 'null') END AS form,
                           coalesce(CASE WHEN l1.top = 'object' THEN NOT l1.doc ? 'ProfileData'
                                                                     AND jsonb_typeof(l1.doc -> 'result') = 'object'
                                         ELSE NOT l1.inner_doc ? 'ProfileData'
                                              AND jsonb_typeof(l1.inner_doc -> 'result') = 'object' END,
                                    false) AS enveloped
                    FROM (
                        -- Rule 1, double encoding: a jsonb string whose text is a JSON object. PostgreSQL 15
                        -- cannot try a cast without an error (no pg_input_is_valid; a plpgsql handler would
                        -- need a CREATE), so the text is checked against JSON's grammar first, for strings
                        -- that look like one (first and last characters { and }, whitespace aside) and only
                        -- then: strings become chr(1), numbers and literals chr(2) (control characters, which
                        -- a JSON text cannot hold outside its strings, nor raw inside them; a text holding
                        -- one is refused up front), whitespace goes, then innermost arrays (chr(3)) and
                        -- objects (chr(4)) collapse, once per level of nesting (at most 200); the text is an
                        -- object when chr(4) is all that is left. Without a backslash in the text a string is
                        -- simply "[^"]*" (four times faster to match). A text holding \u0000 or an unpaired
                        -- surrogate escape, or a number with an exponent of more than three digits, counts as
                        -- a string: jsonb refuses those (the ETL could not store it either).
                        SELECT l0.*, jsonb_typeof(l0.doc) AS top,
                               CASE WHEN jsonb_typeof(l0.doc) = 'string'
                                         AND left(btrim(l0.doc #>> '{}', ' ' || chr(9) || chr(10) || chr(13)), 1) = '{'
                                         AND right(btrim(l0.doc #>> '{}', ' ' || chr(9) || chr(10) || chr(13)), 1) = '}'
                                         AND (l0.doc #>> '{}') !~ '[\x01-\x04]'
                                         AND (strpos(l0.doc #>> '{}', '\u') = 0
                                              OR (l0.doc #>> '{}') !~ '\\u0000|\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F]')
                                         AND (
                                   WITH RECURSIVE red (s, depth) AS (
                                       SELECT t.s, 0
                                       FROM (SELECT translate(regexp_replace(
                                                 replace(replace(replace(regexp_replace(l0.doc #>> '{}',
                                                     CASE WHEN strpos(l0.doc #>> '{}', '\') = 0 THEN '"[^"\x01-\x1f]*"'
                                                          ELSE '"(?:[^"\\\x01-\x1f]+|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"' END,
                                                     chr(1), 'g'), 'true', chr(2)), 'false', chr(2)), 'null', chr(2)),
                                                 '-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?', chr(2), 'g'),
                                                 ' ' || chr(9) || chr(10) || chr(13), '') AS s) AS t
                                       WHERE t.s ~ '^[][{}:,\x01\x02]*$'
                                       UNION ALL
                                       SELECT y.s, w.depth + 1
                                       FROM red AS w
                                       CROSS JOIN LATERAL (SELECT regexp_replace(regexp_replace(w.s,
                                                               '\[([\x01-\x04](,[\x01-\x04])*)?\]', chr(3), 'g'),
                                                               '\{(\x01:[\x01-\x04](,\x01:[\x01-\x04])*)?\}', chr(4), 'g') AS s) AS y
                                       WHERE y.s <> w.s AND w.depth < 200
                                   )
                                   SELECT coalesce(bool_or(red.s = chr(4)), false) FROM red)
                               THEN (l0.doc #>> '{}')::jsonb END AS inner_doc
                        FROM (
                            -- `raw` is de-TOASTed (decompressed) by every function that reads it: read once,
                            -- here, and the decompressed value handed up
                            SELECT date_trunc('month', h.created_at AT TIME ZONE 'UTC') AS month,
                                   h.namecode AS col_namecode,
                                   jsonb_path_query_first(h.raw, '$') AS doc,
                                   h.size_bytes
{% if sampled %}
                            FROM hero_snapshots AS h TABLESAMPLE SYSTEM (%(percent)s) REPEATABLE (%(seed)s)
{% else %}
                            FROM hero_snapshots AS h
{% endif %}
                            WHERE h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s
                            OFFSET 0
                        ) AS l0
                        OFFSET 0
                    ) AS l1
                    OFFSET 0
                ) AS l2
                OFFSET 0
            ) AS l3
            OFFSET 0
        ) AS l4
        OFFSET 0
    ) AS l5
),
classes AS (
    SELECT s.month, k.dim, k.value
    FROM snap AS s
    CROSS JOIN LATERAL (VALUES ('form', s.form), ('envelope', s.envelope), ('verdict', s.verdict),
                               ('namecode', s.namecode), ('name', s.name), ('guild', s.guild),
                               ('troops', s.troops), ('pets', s.pets), ('artifacts', s.artifacts)) AS k(dim, value)
    WHERE k.value IS NOT NULL
),
counted AS (
    SELECT c.month, GROUPING(c.month) = 1 AS total, c.dim, c.value, count(*) AS n
    FROM classes AS c
    GROUP BY GROUPING SETS ((c.month, c.dim, c.value), (c.dim, c.value))
),
sizes AS (
    SELECT s.month, GROUPING(s.month) = 1 AS total,
           count(*) AS snapshots,
           min(s.size_bytes) AS min_bytes,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY s.size_bytes) AS p50_bytes,
           percentile_disc(0.95) WITHIN GROUP (ORDER BY s.size_bytes) AS p95_bytes,
           max(s.size_bytes) AS max_bytes,
           count(*) FILTER (WHERE s.size_bytes > %(big_bytes)s) AS over_big,
           count(*) FILTER (WHERE s.size_from_column) AS size_from_column
    FROM snap AS s
    GROUP BY GROUPING SETS ((s.month), ())
),
keyed AS (
    SELECT s.month, GROUPING(s.month) = 1 AS total, k.dim, k.key, count(*) AS n
    FROM snap AS s
    CROSS JOIN LATERAL (SELECT 'top_key', u.key FROM unnest(s.top_keys) AS u(key)
                        UNION ALL
                        SELECT 'profile_key', u.key FROM unnest(s.profile_keys) AS u(key)) AS k(dim, key)
    GROUP BY GROUPING SETS ((s.month, k.dim, k.key), (k.dim, k.key))
),
ranked AS (
    SELECT k.*, row_number() OVER (PARTITION BY k.total, k.month, k.dim ORDER BY k.n DESC, k.key COLLATE "C") AS place
    FROM keyed AS k
)
SELECT c.month, c.total, c.dim, c.value, c.n FROM counted AS c
UNION ALL
SELECT z.month, z.total, 'size', m.value, m.n
FROM sizes AS z
CROSS JOIN LATERAL (VALUES ('snapshots', z.snapshots), ('min_bytes', z.min_bytes), ('p50_bytes', z.p50_bytes),
                           ('p95_bytes', z.p95_bytes), ('max_bytes', z.max_bytes), ('over_big', z.over_big),
                           ('size_from_column', z.size_from_column)) AS m(value, n)
UNION ALL
SELECT k.month, k.total, k.dim, k.key, k.n FROM ranked AS k WHERE k.place <= %(top)s
