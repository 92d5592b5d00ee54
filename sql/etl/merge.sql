-- Merge the staged ok snapshots into the normalized tables. Newest observation wins: a row is written only
-- when (observed_at, snapshot id) >= the row's (last_seen, source_snapshot_id), and only when something
-- differs, so a re-run writes nothing. Within the batch, DISTINCT ON keeps the newest snapshot's row and,
-- inside one snapshot, the last occurrence of an id. Marks the snapshots processed. Returns rows written
-- per table. Binds no parameters. With upsert_entities false the entity tables are left to merge_entity.sql
-- (MERGE, run first); this statement then writes the summary and marks the snapshots.
{% import "etl/_macros.sql" as m %}
WITH
{% if upsert_entities %}
{% for e in m.ENTITIES %}
{% set cols = [e.id_col] + e.ints|map(attribute=1)|list + e.arrays|map(attribute=1)|list + ["extra"] %}
{% set vals = e.ints|map(attribute=1)|list + e.arrays|map(attribute=1)|list + ["extra"] %}
{{ ident("m_" ~ e.name) }} AS (
    INSERT INTO {{ ident(e.table) }} AS t (user_id
{%- for c in cols %}, {{ ident(c) }}{% endfor %}, last_seen, source_snapshot_id, updated_at)
    SELECT d.user_id
{%- for c in cols %}, d.{{ ident(c) }}{% endfor %}, d.obs, d.sid, now()
    FROM (  -- the sort keys lead the row: see merge_entity.sql
        SELECT DISTINCT ON (s.user_id, st.{{ ident(e.id_col) }}) s.user_id, st.{{ ident(e.id_col) }}, s.obs, s.sid,
               st.ord{% for c in vals %}, st.{{ ident(c) }}{% endfor %}

        FROM {{ ident("sf_stage_" ~ e.name) }} AS st
        JOIN sf_stage_snap AS s ON s.sid = st.sid AND s.ok
        ORDER BY s.user_id, st.{{ ident(e.id_col) }}, s.obs DESC, s.sid DESC, st.ord DESC
    ) AS d
    ON CONFLICT (user_id, {{ ident(e.id_col) }}) DO UPDATE SET
{% for c in vals %}
        {{ ident(c) }} = EXCLUDED.{{ ident(c) }},
{% endfor %}
        last_seen = EXCLUDED.last_seen,
        source_snapshot_id = EXCLUDED.source_snapshot_id,
        updated_at = EXCLUDED.updated_at
    WHERE (EXCLUDED.last_seen, EXCLUDED.source_snapshot_id) >= (t.last_seen, t.source_snapshot_id)
      AND (
{%- for c in vals %}t.{{ ident(c) }}, {% endfor %}t.last_seen, t.source_snapshot_id)
          IS DISTINCT FROM (
{%- for c in vals %}EXCLUDED.{{ ident(c) }}, {% endfor %}EXCLUDED.last_seen, EXCLUDED.source_snapshot_id)
    RETURNING 1
),
{% endfor %}
{% endif %}
newest AS (  -- each user's newest staged snapshot, unless the summary already holds a newer one (the upsert
             -- below would not write it; skipping it here spares its top-troops sort, most of the time when
             -- a job goes newest first)
    SELECT n.*
    FROM (
        SELECT DISTINCT ON (user_id) sid, obs, user_id, namecode, level, pvp_tier, equipped_pet, extra
        FROM sf_stage_snap
        WHERE ok
        ORDER BY user_id, obs DESC, sid DESC
    ) AS n
    WHERE NOT EXISTS (SELECT 1 FROM user_profile_summary AS t
                      WHERE t.user_id = n.user_id AND (t.last_seen, t.source_snapshot_id) > (n.obs, n.sid))
),
top_troops AS (
    SELECT r.sid,
           jsonb_agg(jsonb_build_object('troop_id', r.troop_id, 'amount', r.amount, 'level', r.level)
                     ORDER BY r.amount DESC, r.level DESC, r.troop_id) AS top
    FROM (
        SELECT d.*, row_number() OVER (PARTITION BY d.sid ORDER BY d.amount DESC, d.level DESC, d.troop_id) AS rn
        FROM (
            SELECT DISTINCT ON (st.sid, st.troop_id) st.sid, st.troop_id, st.amount, st.level
            FROM sf_stage_troop AS st
            JOIN newest AS n ON n.sid = st.sid
            ORDER BY st.sid, st.troop_id, st.ord DESC
        ) AS d
    ) AS r
    WHERE r.rn <= 5
    GROUP BY r.sid
),
m_summary AS (
    INSERT INTO user_profile_summary AS t (user_id, namecode, username, level, top_troops, equipped_pet,
                                           pvp_tier, guild_id, last_seen, cached_at, extra, source_snapshot_id)
    SELECT n.user_id, n.namecode, u.username, n.level, coalesce(tt.top, '[]'::jsonb), n.equipped_pet,
           n.pvp_tier, NULL::uuid, n.obs, now(), n.extra, n.sid
    FROM newest AS n
    JOIN users AS u ON u.id = n.user_id
    LEFT JOIN top_troops AS tt ON tt.sid = n.sid
    ORDER BY n.user_id
    ON CONFLICT (user_id) DO UPDATE SET
        namecode = EXCLUDED.namecode,
        username = EXCLUDED.username,
        level = EXCLUDED.level,
        top_troops = EXCLUDED.top_troops,
        equipped_pet = EXCLUDED.equipped_pet,
        pvp_tier = EXCLUDED.pvp_tier,
        guild_id = EXCLUDED.guild_id,
        last_seen = EXCLUDED.last_seen,
        cached_at = EXCLUDED.cached_at,
        extra = EXCLUDED.extra,
        source_snapshot_id = EXCLUDED.source_snapshot_id
    WHERE (EXCLUDED.last_seen, EXCLUDED.source_snapshot_id) >= (t.last_seen, t.source_snapshot_id)
      AND (t.namecode, t.username, t.level, t.top_troops, t.equipped_pet, t.pvp_tier, t.extra,
           t.last_seen, t.source_snapshot_id)
          IS DISTINCT FROM (EXCLUDED.namecode, EXCLUDED.username, EXCLUDED.level, EXCLUDED.top_troops,
                            EXCLUDED.equipped_pet, EXCLUDED.pvp_tier, EXCLUDED.extra,
                            EXCLUDED.last_seen, EXCLUDED.source_snapshot_id)
    RETURNING 1
),
m_snapshots AS (
    UPDATE hero_snapshots AS h
    SET user_id = s.user_id,
        processed_at = coalesce(h.processed_at, now()),
        processing = false
    FROM sf_stage_snap AS s
    WHERE h.id = s.sid AND s.ok
      AND (h.user_id IS DISTINCT FROM s.user_id OR h.processed_at IS NULL OR h.processing)
    RETURNING 1
)
SELECT (SELECT count(*) FROM sf_stage_snap WHERE ok) AS applied
{% if upsert_entities %}
{% for e in m.ENTITIES %}
     , (SELECT count(*) FROM {{ ident("m_" ~ e.name) }}) AS {{ ident(e.table) }}
{% endfor %}
{% endif %}
     , (SELECT count(*) FROM m_summary) AS user_profile_summary
     , (SELECT count(*) FROM m_snapshots) AS hero_snapshots
