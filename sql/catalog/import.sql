-- Load authoritative catalog rows (run after catalog/lock_catalogs.sql, in the same transaction). Each
-- record (kind, id, name, meta) is classified against its catalog row and applied in this one statement:
--   inserted              no row with that id: inserted;
--   placeholder_replaced  a placeholder row (meta.placeholder = true): gets the name and meta, loses the flag;
--   updated               a real row whose name or meta differs, and `update` is true: overwritten;
--   skipped_existing      a real row whose name or meta differs, and `update` is false: left as it is;
--   unchanged             a real row with the same name and meta (jsonb equality): not written.
-- Only inserted, placeholder_replaced and updated rows are written, so loading a file twice writes nothing
-- the second time (data-modifying CTEs run to completion whether or not their rows are read). Returns
-- (kind, id, outcome) per record.
-- Binds: kinds (text[]), ids (integer[]), names (text[]), metas (jsonb[]), update (boolean).
{% import "etl/_macros.sql" as m %}
WITH src AS (
    SELECT s.kind, s.id, s.name, s.meta
    FROM unnest(%(kinds)s::text[], %(ids)s::integer[], %(names)s::text[], %(metas)s::jsonb[]) AS s(kind, id, name, meta)
),
{% for e in m.ENTITIES %}
{{ ident("cmp_" ~ e.name) }} AS (
    SELECT s.id, s.name, s.meta,
           CASE WHEN c.id IS NULL THEN 'inserted'
                WHEN c.meta ->> 'placeholder' = 'true' THEN 'placeholder_replaced'
                WHEN c.name IS NOT DISTINCT FROM s.name AND c.meta = s.meta THEN 'unchanged'
                WHEN %(update)s::boolean THEN 'updated'
                ELSE 'skipped_existing' END AS outcome
    FROM src AS s
    LEFT JOIN {{ ident(e.catalog) }} AS c ON c.id = s.id
    WHERE s.kind = {{ sqlstr(e.name) }}
),
{{ ident("ins_" ~ e.name) }} AS (
    INSERT INTO {{ ident(e.catalog) }} (id, name, meta)
    SELECT k.id, k.name, k.meta FROM {{ ident("cmp_" ~ e.name) }} AS k WHERE k.outcome = 'inserted'
    ORDER BY k.id
    RETURNING id
),
{{ ident("upd_" ~ e.name) }} AS (
    UPDATE {{ ident(e.catalog) }} AS c SET name = k.name, meta = k.meta
    FROM {{ ident("cmp_" ~ e.name) }} AS k
    WHERE c.id = k.id AND k.outcome IN ('placeholder_replaced', 'updated')
    RETURNING c.id
){{ "," if not loop.last else "" }}
{% endfor %}
{% for e in m.ENTITIES %}
{{ "UNION ALL " if not loop.first else "" }}SELECT {{ sqlstr(e.name) }} AS kind, k.id, k.outcome
FROM {{ ident("cmp_" ~ e.name) }} AS k
{% endfor %}
ORDER BY 1, 2
