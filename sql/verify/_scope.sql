{#- The snapshots a verification covers, as a WHERE fragment over hero_snapshots AS h. Every bound value
    may be NULL, meaning "no limit": from_ts and to_ts (a half-open created_at range), namecodes (text[])
    and ids (uuid[]) from a job's selector. -#}
(%(from_ts)s::timestamptz IS NULL OR h.created_at >= %(from_ts)s::timestamptz)
AND (%(to_ts)s::timestamptz IS NULL OR h.created_at < %(to_ts)s::timestamptz)
AND (%(namecodes)s::text[] IS NULL OR h.namecode = ANY(%(namecodes)s::text[]))
AND (%(ids)s::uuid[] IS NULL OR h.id = ANY(%(ids)s::uuid[]))
