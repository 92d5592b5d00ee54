-- Which of the given snapshot ids exist in hero_snapshots (an id file naming an unknown snapshot is refused,
-- whatever --from/--to say). Binds: ids (uuid[]).
SELECT h.id FROM hero_snapshots AS h WHERE h.id = ANY(%(ids)s::uuid[])
