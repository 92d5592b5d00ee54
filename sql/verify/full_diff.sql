-- verify --full: diff what the ETL should have written for a chunk of users against what the tables hold.
-- The expected state comes from the staging tables, filled with every processed snapshot of these users by
-- the ETL's own stage.sql + screen.sql + flag.sql (+ the reference path for flagged snapshots; see
-- pipeline.stage_exact) and linked to users by full_link.sql. The write rules are stated again here, on
-- purpose independently of merge*.sql: an entity row comes from the newest ok snapshot (created_at, then id)
-- that holds its id, the last occurrence inside that snapshot; the summary from the user's newest ok
-- snapshot (top troops: its five highest amount, then level, then lower id); users.username from the newest
-- ok snapshot with a name. One row per finding:
--   kind 'changed' (a column differs), 'missing' (an expected row is absent), 'unsupported' (a row that no
--   valid snapshot supports), 'provenance' (last_seen or source_snapshot_id is not the newest valid
--   observation), and per table one kind 'rows' line: expected and found row counts (not a finding).
-- Columns: kind, tbl, user_id, namecode, key (jsonb), col, expected (jsonb), found (jsonb).
-- Binds: users uuid[] (the chunk).
{% import "etl/_macros.sql" as m %}
{% set PROV = ("last_seen", "source_snapshot_id") %}
WITH
ok_snap AS MATERIALIZED (
    SELECT s.sid, s.obs, s.user_id, s.namecode, s.username, s.level, s.pvp_tier, s.equipped_pet, s.extra
    FROM sf_stage_snap AS s
    WHERE s.ok AND s.user_id = ANY(%(users)s::uuid[])
),
{% for e in m.ENTITIES %}
{% set vals = e.ints|map(attribute=1)|list + e.arrays|map(attribute=1)|list + ["extra"] %}
{{ e.name }}_exp AS MATERIALIZED (
    SELECT DISTINCT ON (s.user_id, st.{{ ident(e.id_col) }})
           s.user_id, st.{{ ident(e.id_col) }} AS item_id
{%- for c in vals %}, st.{{ ident(c) }}{% endfor %}, s.obs AS last_seen, s.sid AS source_snapshot_id
    FROM {{ ident("sf_stage_" ~ e.name) }} AS st
    JOIN ok_snap AS s ON s.sid = st.sid
    ORDER BY s.user_id, st.{{ ident(e.id_col) }}, s.obs DESC, s.sid DESC, st.ord DESC
),
{{ e.name }}_got AS MATERIALIZED (
    SELECT t.user_id, t.{{ ident(e.id_col) }} AS item_id
{%- for c in vals %}, t.{{ ident(c) }}{% endfor %}, t.last_seen, t.source_snapshot_id
    FROM {{ ident(e.table) }} AS t
    WHERE t.user_id = ANY(%(users)s::uuid[])
),
{{ e.name }}_diff AS (
    SELECT {{ sqlstr(e.table) }} AS tbl, coalesce(x.user_id, g.user_id) AS user_id,
           jsonb_build_object({{ sqlstr(e.id_col) }}, coalesce(x.item_id, g.item_id)) AS key,
           d.kind, d.col, d.expected, d.found
    FROM {{ e.name }}_exp AS x
    FULL JOIN {{ e.name }}_got AS g ON g.user_id = x.user_id AND g.item_id = x.item_id
    CROSS JOIN LATERAL (
        SELECT 'missing' AS kind, NULL::text AS col, to_jsonb(x) - 'user_id' - 'item_id' AS expected, NULL::jsonb AS found
        WHERE g.user_id IS NULL
        UNION ALL
        SELECT 'unsupported', NULL, NULL, to_jsonb(g) - 'user_id' - 'item_id' WHERE x.user_id IS NULL
{% for c in vals %}
        UNION ALL
        SELECT 'changed', {{ sqlstr(c) }}, to_jsonb(x.{{ ident(c) }}), to_jsonb(g.{{ ident(c) }})
        WHERE x.user_id IS NOT NULL AND g.user_id IS NOT NULL AND x.{{ ident(c) }} IS DISTINCT FROM g.{{ ident(c) }}
{% endfor %}
{% for c in PROV %}
        UNION ALL
        SELECT 'provenance', {{ sqlstr(c) }}, to_jsonb(x.{{ ident(c) }}), to_jsonb(g.{{ ident(c) }})
        WHERE x.user_id IS NOT NULL AND g.user_id IS NOT NULL AND x.{{ ident(c) }} IS DISTINCT FROM g.{{ ident(c) }}
{% endfor %}
    ) AS d
    -- only rows that differ at all reach the lateral list of findings
    WHERE x.user_id IS NULL OR g.user_id IS NULL
       OR ({% for c in vals + PROV|list %}x.{{ ident(c) }}{{ ", " if not loop.last else "" }}{% endfor %})
          IS DISTINCT FROM ({% for c in vals + PROV|list %}g.{{ ident(c) }}{{ ", " if not loop.last else "" }}{% endfor %})
),
{% endfor %}
newest AS MATERIALIZED (
    SELECT DISTINCT ON (s.user_id) s.*
    FROM ok_snap AS s
    ORDER BY s.user_id, s.obs DESC, s.sid DESC
),
named AS MATERIALIZED (
    SELECT DISTINCT ON (s.user_id) s.user_id, s.username
    FROM ok_snap AS s
    WHERE s.username IS NOT NULL
    ORDER BY s.user_id, s.obs DESC, s.sid DESC
),
top_troops AS (
    SELECT r.sid,
           jsonb_agg(jsonb_build_object('troop_id', r.troop_id, 'amount', r.amount, 'level', r.level)
                     ORDER BY r.amount DESC, r.level DESC, r.troop_id) FILTER (WHERE r.rn <= 5) AS top
    FROM (
        SELECT d.*, row_number() OVER (PARTITION BY d.sid ORDER BY d.amount DESC, d.level DESC, d.troop_id) AS rn
        FROM (
            SELECT DISTINCT ON (st.sid, st.troop_id) st.sid, st.troop_id, st.amount, st.level
            FROM sf_stage_troop AS st
            JOIN newest AS n ON n.sid = st.sid
            ORDER BY st.sid, st.troop_id, st.ord DESC
        ) AS d
    ) AS r
    GROUP BY r.sid
),
{% set SUMMARY = ("namecode", "username", "level", "top_troops", "equipped_pet", "pvp_tier", "guild_id", "extra") %}
summary_exp AS MATERIALIZED (
    SELECT n.user_id, n.namecode, nm.username, n.level, coalesce(tt.top, '[]'::jsonb) AS top_troops,
           n.equipped_pet, n.pvp_tier, NULL::uuid AS guild_id, n.extra,
           n.obs AS last_seen, n.sid AS source_snapshot_id
    FROM newest AS n
    LEFT JOIN named AS nm ON nm.user_id = n.user_id
    LEFT JOIN top_troops AS tt ON tt.sid = n.sid
),
summary_got AS MATERIALIZED (
    SELECT t.user_id{% for c in SUMMARY + PROV %}, t.{{ ident(c) }}{% endfor %}

    FROM user_profile_summary AS t
    WHERE t.user_id = ANY(%(users)s::uuid[])
),
summary_diff AS (
    SELECT 'user_profile_summary' AS tbl, coalesce(x.user_id, g.user_id) AS user_id,
           jsonb_build_object('user_id', coalesce(x.user_id, g.user_id)) AS key, d.kind, d.col, d.expected, d.found
    FROM summary_exp AS x
    FULL JOIN summary_got AS g ON g.user_id = x.user_id
    CROSS JOIN LATERAL (
        SELECT 'missing' AS kind, NULL::text AS col, to_jsonb(x) - 'user_id' - 'item_id' AS expected, NULL::jsonb AS found
        WHERE g.user_id IS NULL
        UNION ALL
        SELECT 'unsupported', NULL, NULL, to_jsonb(g) - 'user_id' - 'item_id' WHERE x.user_id IS NULL
{% for c in SUMMARY + PROV %}
        UNION ALL
        SELECT {{ sqlstr("provenance" if c in PROV else "changed") }}, {{ sqlstr(c) }},
               to_jsonb(x.{{ ident(c) }}), to_jsonb(g.{{ ident(c) }})
        WHERE x.user_id IS NOT NULL AND g.user_id IS NOT NULL AND x.{{ ident(c) }} IS DISTINCT FROM g.{{ ident(c) }}
{% endfor %}
    ) AS d
    WHERE x.user_id IS NULL OR g.user_id IS NULL
       OR ({% for c in SUMMARY + PROV %}x.{{ ident(c) }}{{ ", " if not loop.last else "" }}{% endfor %})
          IS DISTINCT FROM ({% for c in SUMMARY + PROV %}g.{{ ident(c) }}{{ ", " if not loop.last else "" }}{% endfor %})
),
-- users.username, for the users the ETL wrote (those with an ok snapshot; without a named one: NULL)
users_diff AS (
    SELECT 'users' AS tbl, u.id AS user_id, jsonb_build_object('id', u.id) AS key, 'changed' AS kind,
           'username' AS col, to_jsonb(nm.username) AS expected, to_jsonb(u.username) AS found
    FROM users AS u
    LEFT JOIN named AS nm ON nm.user_id = u.id
    WHERE u.id = ANY(%(users)s::uuid[])
      AND u.id IN (SELECT n.user_id FROM newest AS n)
      AND u.username IS DISTINCT FROM nm.username
),
-- a processed snapshot linked to another user than its namecode's (or whose namecode has no user)
link_diff AS (
    SELECT 'hero_snapshots' AS tbl, h.user_id, jsonb_build_object('id', s.sid) AS key, 'changed' AS kind,
           'user_id' AS col, jsonb_build_object('namecode', s.namecode, 'user_id', s.user_id) AS expected,
           to_jsonb(h.user_id) AS found
    FROM sf_stage_snap AS s
    JOIN hero_snapshots AS h ON h.id = s.sid
    WHERE s.ok AND s.user_id IS DISTINCT FROM h.user_id
),
findings AS (
{% for e in m.ENTITIES %}
    SELECT * FROM {{ e.name }}_diff
    UNION ALL
{% endfor %}
    SELECT * FROM summary_diff
    UNION ALL
    SELECT * FROM users_diff
    UNION ALL
    SELECT * FROM link_diff
)
SELECT f.kind, f.tbl, f.user_id, u.namecode, f.key, f.col, f.expected, f.found
FROM findings AS f
LEFT JOIN users AS u ON u.id = f.user_id
{% for e in m.ENTITIES %}
UNION ALL
SELECT 'rows', {{ sqlstr(e.table) }}, NULL, NULL, NULL, NULL,
       to_jsonb((SELECT count(*) FROM {{ e.name }}_exp)), to_jsonb((SELECT count(*) FROM {{ e.name }}_got))
{% endfor %}
UNION ALL
SELECT 'rows', 'user_profile_summary', NULL, NULL, NULL, NULL,
       to_jsonb((SELECT count(*) FROM summary_exp)), to_jsonb((SELECT count(*) FROM summary_got))
