-- Merge one entity's staged rows (ok snapshots only) into its table with MERGE: newest observation wins, a
-- row is written only when (observed_at, snapshot id) >= its (last_seen, source_snapshot_id) and something
-- differs, so a re-run writes nothing. Within the batch, DISTINCT ON keeps the newest snapshot's row and,
-- inside one snapshot, the last occurrence of an id. Binds no parameters; the row count is rows written.
-- MERGE joins once and updates in place, about a quarter cheaper than INSERT ... ON CONFLICT (no
-- speculative insertion, no extra tuple lock). Its one gap: a row another worker inserts meanwhile makes
-- the insert branch fail with unique_violation; the caller then rolls back to a savepoint and applies the
-- batch with merge.sql's ON CONFLICT upserts instead.
{% import "etl/_macros.sql" as m %}
{% set e = (m.ENTITIES | selectattr("name", "equalto", entity) | list)[0] %}
{% set vals = e.ints|map(attribute=1)|list + e.arrays|map(attribute=1)|list + ["extra"] %}
{% set cols = [e.id_col] + vals %}
MERGE INTO {{ ident(e.table) }} AS t
USING (
    -- the sort keys lead the row (st.ord too, though the merge does not read it): past the first key, a sort
    -- reads each key with heap_getattr(), which walks every variable-width column before it (extra, arrays)
    SELECT DISTINCT ON (s.user_id, st.{{ ident(e.id_col) }}) s.user_id, st.{{ ident(e.id_col) }}, s.obs, s.sid, st.ord
{%- for c in vals %}, st.{{ ident(c) }}{% endfor %}

    FROM {{ ident("sf_stage_" ~ e.name) }} AS st
    JOIN sf_stage_snap AS s ON s.sid = st.sid AND s.ok
    ORDER BY s.user_id, st.{{ ident(e.id_col) }}, s.obs DESC, s.sid DESC, st.ord DESC
) AS d
ON t.user_id = d.user_id AND t.{{ ident(e.id_col) }} = d.{{ ident(e.id_col) }}
WHEN MATCHED AND (d.obs, d.sid) >= (t.last_seen, t.source_snapshot_id)
     AND ({% for c in vals %}t.{{ ident(c) }}, {% endfor %}t.last_seen, t.source_snapshot_id)
         IS DISTINCT FROM ({% for c in vals %}d.{{ ident(c) }}, {% endfor %}d.obs, d.sid) THEN
    UPDATE SET {% for c in vals %}{{ ident(c) }} = d.{{ ident(c) }}, {% endfor %}last_seen = d.obs,
               source_snapshot_id = d.sid, updated_at = now()
WHEN NOT MATCHED THEN
    INSERT (user_id{% for c in cols %}, {{ ident(c) }}{% endfor %}, last_seen, source_snapshot_id, updated_at)
    VALUES (d.user_id{% for c in cols %}, d.{{ ident(c) }}{% endfor %}, d.obs, d.sid, now())
