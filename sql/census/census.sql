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
WITH snap AS MATERIALIZED (
    SELECT date_trunc('month', h.created_at AT TIME ZONE 'UTC') AS month,
           coalesce(h.size_bytes, octet_length(r.doc::text)) AS size_bytes,
           h.size_bytes IS NOT NULL AS size_from_column,
           f.form,
           CASE WHEN f.obj IS NOT NULL THEN CASE WHEN e.enveloped THEN 'enveloped' ELSE 'bare' END END AS envelope,
           v.verdict,
           CASE WHEN c.parsed THEN c.namecode END AS namecode,
           CASE WHEN c.parsed THEN c.name END AS name,
           CASE WHEN c.parsed THEN c.guild END AS guild,
           CASE WHEN c.parsed THEN c.troops END AS troops,
           CASE WHEN c.parsed THEN c.pets END AS pets,
           CASE WHEN c.parsed THEN c.artifacts END AS artifacts,
           CASE WHEN pl.p IS NOT NULL AND v.verdict <> 'api_error' THEN
               ARRAY(SELECT DISTINCT CASE WHEN k.key ~ %(sensitive_re)s THEN '[REDACTED]' ELSE left(k.key, 64) END
                     FROM jsonb_object_keys(pl.p) AS k(key)
                     WHERE k.key <> ALL (ARRAY['NameCode', 'Name', 'ProfileData']))
           END AS top_keys,
           CASE WHEN c.parsed THEN
               ARRAY(SELECT DISTINCT CASE WHEN k.key ~ %(sensitive_re)s THEN '[REDACTED]' ELSE left(k.key, 64) END
                     FROM jsonb_object_keys(x."ProfileData") AS k(key)
                     WHERE k.key <> ALL (ARRAY['NameCode', 'Name', 'Level', 'PvpTier', 'Troops', 'Pets',
                                               'Artifacts', 'EquippedPet', 'Guild', 'GuildName']))
           END AS profile_keys
{% if sampled %}
    FROM hero_snapshots AS h TABLESAMPLE SYSTEM (%(percent)s) REPEATABLE (%(seed)s)
{% else %}
    FROM hero_snapshots AS h
{% endif %}
    -- `raw` is de-TOASTed (decompressed) by every function that reads it: read it once, here, and hand the
    -- decompressed value on (OFFSET 0 keeps the planner from duplicating the call into each use).
    CROSS JOIN LATERAL (SELECT jsonb_path_query_first(h.raw, '$') AS doc OFFSET 0) AS r
    -- Rule 1, double encoding: a jsonb string whose text is a JSON object. PostgreSQL 15 cannot try a cast
    -- without an error (no pg_input_is_valid, and a plpgsql handler would need a CREATE), so the text is
    -- checked against JSON's grammar first, for strings only: strings, numbers and literals become one
    -- letter each (s, n), whitespace goes, then innermost arrays (v) and objects (o) collapse, once per
    -- level of nesting (at most 200); the text is an object when `o` is all that is left. The string token
    -- leaves out \u0000 and unpaired surrogates, and a number's exponent is kept to three digits: jsonb
    -- refuses those, so such a text is counted as a string (the ETL could not store it either).
    CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(r.doc) = 'string' AND (
                   WITH RECURSIVE red (s, depth) AS (
                       SELECT l.s, 0
                       FROM (SELECT regexp_replace(regexp_replace(regexp_replace(r.doc #>> '{}',
                                 '"([^"\\\x01-\x1f]|\\["\\/bfnrt]|\\u(?!0000)(?![dD][89a-fA-F])[0-9a-fA-F]{4}|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})*"',
                                 's', 'g'),
                                 '-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?|true|false|null', 'n', 'g'),
                                 '[ \t\n\r]+', '', 'g') AS s) AS l
                       WHERE l.s ~ '^[][{}:,sn]*$'
                       UNION ALL
                       SELECT y.s, w.depth + 1
                       FROM red AS w
                       CROSS JOIN LATERAL (SELECT regexp_replace(regexp_replace(w.s,
                                               '\[([snvo](,[snvo])*)?\]', 'v', 'g'),
                                               '\{(s:[snvo](,s:[snvo])*)?\}', 'o', 'g') AS s) AS y
                       WHERE y.s <> w.s AND w.depth < 200
                   )
                   SELECT coalesce(bool_or(red.s = 'o'), false) FROM red)
               THEN (r.doc #>> '{}')::jsonb END AS inner_doc
    ) AS d
    CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(r.doc) = 'object' THEN r.doc WHEN d.inner_doc IS NOT NULL THEN d.inner_doc END AS obj,
               CASE WHEN jsonb_typeof(r.doc) = 'object' THEN 'object'
                    WHEN d.inner_doc IS NOT NULL THEN 'double_encoded'
                    ELSE coalesce(jsonb_typeof(r.doc), 'null') END AS form
    ) AS f
    -- Rule 2, the envelope: no ProfileData key and an object `result`: that object is the payload.
    CROSS JOIN LATERAL (SELECT coalesce(NOT f.obj ? 'ProfileData' AND jsonb_typeof(f.obj -> 'result') = 'object',
                                        false) AS enveloped) AS e
    CROSS JOIN LATERAL (SELECT CASE WHEN e.enveloped THEN f.obj -> 'result' ELSE f.obj END AS p) AS pl
    LEFT JOIN LATERAL jsonb_to_record(pl.p) AS x("NameCode" jsonb, "Name" jsonb, "ProfileData" jsonb) ON true
    LEFT JOIN LATERAL jsonb_to_record(CASE WHEN jsonb_typeof(x."ProfileData") = 'object' THEN x."ProfileData" END)
        AS pd("NameCode" jsonb, "Name" jsonb, "Troops" jsonb, "Pets" jsonb, "Artifacts" jsonb, "Guild" jsonb,
              "GuildName" jsonb) ON true
    -- Rules 5-7 and the sections' forms (absent and null alike: no rows).
    CROSS JOIN LATERAL (
        SELECT coalesce(jsonb_typeof(x."ProfileData") = 'object', false) AS parsed,
               CASE WHEN jsonb_typeof(x."NameCode") = 'string' AND x."NameCode" #>> '{}' <> '' THEN 'payload'
                    WHEN jsonb_typeof(pd."NameCode") = 'string' AND pd."NameCode" #>> '{}' <> '' THEN 'profile_data'
                    WHEN h.namecode <> '' THEN 'column'
                    ELSE 'none' END AS namecode,
               CASE WHEN jsonb_typeof(x."Name") = 'string' THEN 'payload'
                    WHEN jsonb_typeof(pd."Name") = 'string' THEN 'profile_data'
                    ELSE 'none' END AS name,
               CASE WHEN jsonb_typeof(pd."Guild" -> 'Name') = 'string' THEN 'guild'
                    WHEN jsonb_typeof(pd."GuildName") = 'string' THEN 'guild_name'
                    ELSE 'none' END AS guild,
{% for section in ("Troops", "Pets", "Artifacts") %}
               CASE coalesce(jsonb_typeof(pd.{{ ident(section) }}), 'null')
                    WHEN 'array' THEN 'array' WHEN 'object' THEN 'keyed' WHEN 'null' THEN 'absent'
                    ELSE 'invalid' END AS {{ ident(section | lower) }}{{ "," if not loop.last else "" }}
{% endfor %}
    ) AS c
    -- Rules 3 and 4, then the namecode, then the sections: the first failure the ETL would record.
    CROSS JOIN LATERAL (
        SELECT CASE WHEN pl.p IS NULL THEN 'not_object'
                    WHEN NOT pl.p ? 'ProfileData' AND pl.p ? 'error' THEN 'api_error'
                    WHEN NOT pl.p ? 'ProfileData' THEN 'no_profile_data'
                    WHEN NOT c.parsed THEN 'profile_data_not_object'
                    WHEN c.namecode = 'none' THEN 'no_namecode'
                    WHEN 'invalid' IN (c.troops, c.pets, c.artifacts) THEN 'invalid_section'
                    ELSE 'ok' END AS verdict
    ) AS v
    WHERE h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s
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
