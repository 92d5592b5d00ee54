-- Parse a batch of snapshots server-side into the staging tables, one row per snapshot and per entity
-- element, each flagged `ok` when it satisfies the snapshot contract (flag.sql finishes the verdict).
-- The payload never leaves the server. Binds: ids uuid[]; with source == 'params' also
-- payloads jsonb, an object {snapshot id: canonical payload} produced by the reference path.
-- Contract v2 is applied here (the envelope, the lookup order of namecode, display name and guild name; the
-- `username` key is removed by screen.sql with the other sensitive keys): an enveloped payload with keyed
-- sections is staged like any other. An API error body has no ProfileData, so it is not ok and the
-- reference records its PARSE_ERROR, as for a double-encoded payload.
-- The inserts return nothing (PostgreSQL runs every data-modifying CTE to completion anyway): a RETURNING
-- clause would collect a row per staged element only to be counted. Sensitive keys are removed afterwards,
-- from the staged rows, by screen.sql (source 'table'; the reference path's payloads are clean already).
-- elements == 'recordset' reads an array section with one jsonb_populate_recordset call per snapshot (row
-- type: stage_tables.sql's sf_fields_*) instead of a jsonb_array_elements + jsonb_to_record per element
-- (6 percent fewer instructions); an element itself is looked up by position where it is needed. That
-- function raises invalid_parameter_value on an array that holds a non-object, so the caller stages that
-- batch again with elements == 'each' (the default), element by element, which never raises.
-- Superseded elements are validated but not staged: in a snapshot older than its user's summary, a valid
-- element whose row already holds a newer observation (and whose id is in its catalog) would lose the
-- merge's comparison. A newest-first job meets many (nearly half of the bench's; most, with a longer
-- history); staging, screening and sorting them only for the merges to skip them was a quarter of the
-- bench's SQL time. Nothing else reads them: flag.sql needs the invalid ones (always staged), merge.sql's
-- top troops only snapshots newer than the summary. docs/DESIGN.md says why each condition is needed.
{% import "etl/_macros.sql" as m %}
{% set read_elements = elements | default("each") %}
{% set skip_superseded = superseded | default(true) %}
WITH RECURSIVE src AS MATERIALIZED (
    SELECT h.id AS sid,
           h.created_at AS obs,
           t.is_obj,
           jsonb_typeof(x."ProfileData") = 'object' AS pd_is_obj,
           x."Name" AS j_name,
           p."Name" AS j_pname,
           p."Level" AS j_level,
           p."PvpTier" AS j_pvp,
           p."Troops" AS j_troops,
           p."Pets" AS j_pets,
           p."Artifacts" AS j_artifacts,
           p."EquippedPet" AS j_equipped,
           p."Guild" AS j_guild,
           p."GuildName" AS j_guild_name,
           nc.namecode,
{% if skip_superseded %}
           cu.user_id AS cand_user
{% else %}
           NULL::uuid AS cand_user
{% endif %}
    FROM hero_snapshots AS h
{% if source == "params" %}
    CROSS JOIN LATERAL (SELECT %(payloads)s::jsonb -> h.id::text AS raw) AS r0
    CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(r0.raw) = 'object' THEN r0.raw END AS obj) AS r
{% else %}
    -- `raw` is de-TOASTed (decompressed) by every function that reads it: one jsonpath call both checks that
    -- it is an object and hands on the decompressed value, instead of a jsonb_typeof() and a jsonb_to_record()
    -- that decompressed the multi-MB value twice (OFFSET 0 keeps the planner from duplicating the call).
    CROSS JOIN LATERAL (SELECT jsonb_path_query_first(h.raw, 'strict $ ? (@.type() == "object")') AS obj
                        OFFSET 0) AS r
{% endif %}
    CROSS JOIN LATERAL (SELECT r.obj IS NOT NULL AS is_obj) AS t
    -- contract v2, rule 2 (the envelope): an object with no ProfileData key whose `result` is an object is
    -- replaced by that object. A v1 payload pays one key lookup (`?`); an enveloped one a copy of `result`.
    CROSS JOIN LATERAL (SELECT CASE WHEN NOT r.obj ? 'ProfileData' THEN r.obj -> 'result' END AS res
                        OFFSET 0) AS env
    CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(env.res) = 'object' THEN env.res ELSE r.obj END AS obj)
        AS pl
    LEFT JOIN LATERAL jsonb_to_record(pl.obj)
        AS x("NameCode" jsonb, "Name" jsonb, "ProfileData" jsonb) ON true
    LEFT JOIN LATERAL jsonb_to_record(CASE WHEN jsonb_typeof(x."ProfileData") = 'object' THEN x."ProfileData" END)
        AS p("Level" jsonb, "PvpTier" jsonb, "Troops" jsonb, "Pets" jsonb, "Artifacts" jsonb,
             "EquippedPet" jsonb, "Guild" jsonb, "NameCode" jsonb, "Name" jsonb, "GuildName" jsonb) ON true
    -- rule 5: the payload's NameCode, else ProfileData.NameCode, else the column (the first non-empty string)
    CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(x."NameCode") = 'string' AND x."NameCode" #>> '{}' <> ''
                                    THEN x."NameCode" #>> '{}'
                                    WHEN jsonb_typeof(p."NameCode") = 'string' AND p."NameCode" #>> '{}' <> ''
                                    THEN p."NameCode" #>> '{}'
                                    ELSE nullif(h.namecode, '') END AS namecode) AS nc
{% if skip_superseded %}
    -- the snapshot's user when its summary already holds a newer snapshot ((last_seen, id) greater): only
    -- such a snapshot's elements may be left unstaged (below); merge.sql's top troops never read it
    LEFT JOIN LATERAL (SELECT u.id AS user_id
                       FROM users AS u
                       JOIN user_profile_summary AS ps ON ps.user_id = u.id
                       WHERE u.namecode = nc.namecode
                         AND (ps.last_seen, ps.source_snapshot_id) > (h.created_at, h.id)
                       OFFSET 0) AS cu ON true  -- probed per snapshot, not a hash of every user's summary
{% endif %}
    WHERE h.id = ANY(%(ids)s::uuid[])
),
snap_n AS (
    SELECT s.*,
           -- rule 6: the top-level Name, else ProfileData.Name (the first non-empty string)
           CASE WHEN jsonb_typeof(s.j_name) = 'string' AND s.j_name #>> '{}' <> ''
                THEN s.j_name #>> '{}'
                WHEN jsonb_typeof(s.j_pname) = 'string' AND s.j_pname #>> '{}' <> ''
                THEN s.j_pname #>> '{}' END AS username,
           {{ m.num("s.j_level") }} AS n_level,
           {{ m.num("s.j_pvp") }} AS n_pvp,
           CASE WHEN jsonb_typeof(s.j_equipped) = 'object' THEN s.j_equipped -> 'PetId'
                ELSE s.j_equipped END AS j_pet_id,
           CASE WHEN jsonb_typeof(s.j_equipped) = 'object' THEN s.j_equipped -> 'Level' END AS j_pet_level
    FROM src AS s
),
snap_v AS (
    SELECT n.*,
           {{ m.num("n.j_pet_id") }} AS n_pet_id,
           {{ m.num("n.j_pet_level") }} AS n_pet_level
    FROM snap_n AS n
),
ins_snap AS (
    INSERT INTO sf_stage_snap (sid, obs, namecode, username, level, pvp_tier, equipped_pet, extra, ok)
    SELECT v.sid, v.obs, v.namecode, v.username,
           CASE WHEN {{ m.in_range("v.n_level", 0, 2147483647) }} THEN v.n_level::integer END,
           CASE WHEN {{ m.in_range("v.n_pvp", 0, 2147483647) }} THEN v.n_pvp::integer END,
           CASE WHEN {{ m.in_range("v.n_pet_id", 1, 2147483647) }}
                THEN jsonb_build_object(
                    'pet_id', v.n_pet_id::integer,
                    'level', CASE WHEN {{ m.in_range("v.n_pet_level", 0, 2147483647) }}
                                  THEN v.n_pet_level::integer END)
           END,
           -- rule 7: Guild.Name, else GuildName (the first string, kept exactly)
           CASE WHEN jsonb_typeof(v.j_guild) = 'object' AND jsonb_typeof(v.j_guild -> 'Name') = 'string'
                THEN jsonb_build_object('guild_name', v.j_guild ->> 'Name')
                WHEN jsonb_typeof(v.j_guild_name) = 'string'
                THEN jsonb_build_object('guild_name', v.j_guild_name #>> '{}') ELSE '{}'::jsonb END,
           v.is_obj AND coalesce(v.pd_is_obj, false) AND v.namecode IS NOT NULL
           AND (v.j_level IS NULL OR {{ m.in_range("v.n_level", 0, 2147483647) }})
           AND (v.j_pvp IS NULL OR {{ m.in_range("v.n_pvp", 0, 2147483647) }})
{% for e in m.ENTITIES %}
           AND (v.j_{{ e.name }}s IS NULL OR jsonb_typeof(v.j_{{ e.name }}s) IN ('array', 'object'))
{% endfor %}
    FROM snap_v AS v
{% if skip_superseded %}
),
-- Each user with a snapshot in the batch older than its summary (src.cand_user), with the newest such snapshot.
cand_user AS MATERIALIZED (
    SELECT DISTINCT ON (s.cand_user) s.cand_user AS user_id, s.obs, s.sid
    FROM src AS s
    WHERE s.cand_user IS NOT NULL
    ORDER BY s.cand_user, s.obs DESC, s.sid DESC
{% endif %}
){% for e in m.ENTITIES %},
{% set coldefs %}{{ ident(e.id_field) }} text{% for jf, col, d, hi in e.ints %}, {{ ident(jf) }} text{% endfor %}{% for jf, col in e.arrays %}, {{ ident(jf) }} jsonb{% endfor %}{% endset %}
{% set colnames %}{{ ident(e.id_field) }}{% for jf, col, d, hi in e.ints %}, {{ ident(jf) }}{% endfor %}{% for jf, col in e.arrays %}, {{ ident(jf) }}{% endfor %}{% endset %}
-- Each element of the section (an array, or an object keyed by id) with its fields as text: its position,
-- whether it is an object, its key (object form: the id when the entry has none) and the element itself.
{{ e.name }}_el AS (
{% if read_elements == "recordset" %}
    -- one jsonb_populate_recordset call per snapshot reads every element's fields (cheaper than a
    -- jsonb_to_record per element); the element itself is looked up by position in its section (`sec`) only
    -- where it is needed (its extra, unless it loses; a rare integer form)
    SELECT s.sid, s.cand_user, r.ord, NULL::jsonb AS elem, s.j_{{ e.name }}s AS sec, true AS is_obj,
           NULL::text AS k_id,
           {% for c in colnames.split(", ") %}{{ "r." ~ c }}{{ ", " if not loop.last else "" }}{% endfor %}

    FROM src AS s
    CROSS JOIN LATERAL jsonb_populate_recordset(NULL::{{ ident("sf_fields_" ~ e.name) }},
                                                CASE WHEN jsonb_typeof(s.j_{{ e.name }}s) = 'array'
                                                     THEN s.j_{{ e.name }}s END)
        WITH ORDINALITY AS r({{ colnames }}, ord)
{% else %}
    SELECT s.sid, s.cand_user, a.ord, a.elem, NULL::jsonb AS sec,
           coalesce(jsonb_typeof(a.elem) = 'object', false) AS is_obj,
           NULL::text AS k_id,
           {% for c in colnames.split(", ") %}{{ "f." ~ c }}{{ ", " if not loop.last else "" }}{% endfor %}

    FROM src AS s
    CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(s.j_{{ e.name }}s) = 'array'
                                                 THEN s.j_{{ e.name }}s END) WITH ORDINALITY AS a(elem, ord)
    LEFT JOIN LATERAL jsonb_to_record(CASE WHEN jsonb_typeof(a.elem) = 'object' THEN a.elem END)
        AS f({{ coldefs }}) ON true
{% endif %}
    UNION ALL
    -- the keyed form (contract v2's common case): each entry's fields from a jsonb_populate_record in the
    -- select list of an OFFSET 0 subquery (computed once per entry, its fields read from the composite),
    -- not a LATERAL jsonb_to_record, whose function scan built a one-row tuplestore per entry (-1.5 percent
    -- of the stage's instructions on the v2 mix)
    SELECT s.sid, s.cand_user, o.ord, o.elem, NULL::jsonb, o.is_obj,
           o.k,  -- the id when the entry has none: int_ok() below accepts only a decimal integer
           {% for c in colnames.split(", ") %}{{ "(o.rec)." ~ c }}{{ ", " if not loop.last else "" }}{% endfor %}

    FROM src AS s
    CROSS JOIN LATERAL (
        SELECT kv.k, kv.elem, kv.ord, t.is_obj,
               CASE WHEN t.is_obj THEN jsonb_populate_record(NULL::{{ ident("sf_fields_" ~ e.name) }}, kv.elem) END AS rec
        FROM jsonb_each(CASE WHEN jsonb_typeof(s.j_{{ e.name }}s) = 'object'
                             THEN s.j_{{ e.name }}s END) WITH ORDINALITY AS kv(k, elem, ord)
        CROSS JOIN LATERAL (SELECT coalesce(jsonb_typeof(kv.elem) = 'object', false) AS is_obj) AS t
        OFFSET 0
    ) AS o
),
{% if skip_superseded %}
-- The rows of those users, newer than each user's newest such snapshot in the batch, whose catalog id exists
-- (ids as text, as an element gives them): an element of one of those snapshots that finds its row here
-- would lose the merge's comparison, and its id passed the catalog check when that row was written.
-- Per user, a probe of the primary key (user_id leads it) in an `OFFSET 0` subquery, which is not flattened:
-- joined plainly, the planner hashed the whole table once per batch (a scan that grows with the table: at
-- 100,000 snapshots it was most of the stage's time; bench/README.md, "Scale").
-- The catalog is joined once to all of them (the outer `OFFSET 0`), not once per user.
{{ e.name }}_known AS MATERIALIZED (
    SELECT r.user_id, r.k
    FROM (
        SELECT t.user_id, t.id, t.k
        FROM cand_user AS cu
        CROSS JOIN LATERAL (
            SELECT t.user_id, t.{{ ident(e.id_col) }} AS id, t.{{ ident(e.id_col) }}::text AS k
            FROM {{ ident(e.table) }} AS t
            WHERE t.user_id = cu.user_id AND (t.last_seen, t.source_snapshot_id) > (cu.obs, cu.sid)
            OFFSET 0
        ) AS t
        OFFSET 0
    ) AS r
    JOIN {{ ident(e.catalog) }} AS cat ON cat.id = r.id
),
{% endif %}
{% set elem = "coalesce(el.elem, el.sec -> (el.ord - 1)::integer)" %}
{{ e.name }}_f AS (
    SELECT el.sid, el.ord, x.extra, el.loses,
           el.is_obj
           AND coalesce(el.{{ ident(e.id_field) }}, el.k_id) IS NOT NULL
           AND {{ m.int_ok("coalesce(el." ~ ident(e.id_field) ~ ", el.k_id)", 2147483647, elem, e.id_field) }}
{% for jf, col, d, hi in e.ints %}
           AND {{ m.int_ok("el." ~ ident(jf), hi, elem, jf) }}
{% endfor %}
{% for jf, col in e.arrays %}
           AND (el.{{ ident(jf) }} IS NULL
                OR jsonb_typeof(el.{{ ident(jf) }}) = 'array')
{% endfor %}
           AS ok,
           coalesce(el.{{ ident(e.id_field) }}, el.k_id) AS j_id
{% for jf, col, d, hi in e.ints %}
           , el.{{ ident(jf) }} AS {{ ident("j_" ~ col) }}
{% endfor %}
{% for jf, col in e.arrays %}
           , el.{{ ident(jf) }} AS {{ ident("j_" ~ col) }}
{% endfor %}
    FROM (  -- OFFSET 0: `loses` is computed once per element, not once per reference
        SELECT el0.*,
{% if skip_superseded %}
               CASE WHEN el0.cand_user IS NOT NULL  -- a NULL in a hashed IN would scan the whole hash table
                    THEN (el0.cand_user, coalesce(el0.{{ ident(e.id_field) }}, el0.k_id, ''))
                         IN (SELECT k.user_id, k.k FROM {{ e.name }}_known AS k)
                    ELSE false END AS loses
{% else %}
               false AS loses
{% endif %}
        FROM {{ e.name }}_el AS el0
        OFFSET 0
    ) AS el
    CROSS JOIN LATERAL (SELECT CASE WHEN el.is_obj AND NOT el.loses THEN {{ elem }} - ARRAY[{{ sqlstr(e.id_field) }}
{%- for jf, col, d, hi in e.ints %}, {{ sqlstr(jf) }}{% endfor %}
{%- for jf, col in e.arrays %}, {{ sqlstr(jf) }}{% endfor %}]::text[] ELSE '{}'::jsonb END AS extra) AS x
    -- OFFSET 0 keeps this a subquery, evaluated once per element as the insert reads it: flattened, `ok` (read
    -- in every column) would be computed again per reference; MATERIALIZED, every element was written to
    -- and read back from a tuplestore (8 percent more instructions in this statement)
    OFFSET 0
),
ins_{{ e.name }} AS (
    INSERT INTO {{ ident("sf_stage_" ~ e.name) }} (sid, ord, ok, {{ ident(e.id_col) }}
{%- for jf, col, d, hi in e.ints %}, {{ ident(col) }}{% endfor %}
{%- for jf, col in e.arrays %}, {{ ident(col) }}{% endfor %}, extra)
    SELECT f.sid, f.ord,
           coalesce(f.ok AND v.id > 0, false),
           v.id
{% for jf, col, d, hi in e.ints %}
           , CASE WHEN f.ok THEN coalesce({{ m.int_val("f." ~ ident("j_" ~ col), "bigint" if hi > 2147483647 else "integer") }}, {{ d }}) END
{% endfor %}
{% for jf, col in e.arrays %}
           , coalesce(f.{{ ident("j_" ~ col) }}, '[]'::jsonb)
{% endfor %}
           , f.extra
    FROM {{ e.name }}_f AS f
    CROSS JOIN LATERAL (SELECT CASE WHEN f.ok THEN {{ m.int_val("f.j_id", "integer") }} END AS id) AS v
    WHERE NOT coalesce(f.ok AND f.loses, false)  -- a valid element that loses is not staged

){% endfor %}

SELECT 1 AS staged
