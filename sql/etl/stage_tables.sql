-- Create this connection's staging tables for the set-based ETL path (temp, emptied at each commit).
-- Binds no parameters. Safe to run at the start of every batch transaction (IF NOT EXISTS), which also
-- keeps it correct behind a transaction-pooling PgBouncer.
{% import "etl/_macros.sql" as m %}
CREATE TEMPORARY TABLE IF NOT EXISTS sf_stage_snap (
    sid          uuid,
    obs          timestamptz,
    namecode     text,
    username     text,
    level        integer,
    pvp_tier     integer,
    equipped_pet jsonb,
    extra        jsonb,
    ok           boolean,
    user_id      uuid
) ON COMMIT DELETE ROWS;
{% for e in m.ENTITIES %}
-- extra (and the arrays) right after the keys: screen.sql reads only sid, ord and those, and deforming a row
-- walks every column before the one it reads (-0.7 percent instructions for stage + screen)
CREATE TEMPORARY TABLE IF NOT EXISTS {{ ident("sf_stage_" ~ e.name) }} (
    sid   uuid,
    ord   bigint,
    ok    boolean,
    extra jsonb,
{% for jf, col in e.arrays %}
    {{ ident(col) }} jsonb,
{% endfor %}
    {{ ident(e.id_col) }} integer{% for jf, col, d, hi in e.ints %},
    {{ ident(col) }} {{ "bigint" if hi > 2147483647 else "integer" }}{% endfor %}

) ON COMMIT DELETE ROWS;
{% endfor %}
-- Row types for stage.sql's jsonb_populate_recordset (one call per section reads every element's fields as
-- text): these tables never hold a row.
{% for e in m.ENTITIES %}
CREATE TEMPORARY TABLE IF NOT EXISTS {{ ident("sf_fields_" ~ e.name) }} (
    {{ ident(e.id_field) }} text
{%- for jf, col, d, hi in e.ints %},
    {{ ident(jf) }} text
{%- endfor %}
{%- for jf, col in e.arrays %},
    {{ ident(jf) }} jsonb
{%- endfor %}

);
{% endfor %}
