-- One snapshot's payload as JSON text (fetched one at a time: payloads can be megabytes). Binds: id.
SELECT h.raw::text AS raw
FROM hero_snapshots AS h
WHERE h.id = %(id)s
