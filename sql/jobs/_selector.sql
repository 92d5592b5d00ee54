{#- The snapshots a job wants, as a WHERE fragment over hero_snapshots AS h. Binds: from_ts, to_ts,
    reprocess, retry_failed, namecodes (text[] or NULL), ids (uuid[] or NULL). -#}
h.created_at >= %(from_ts)s AND h.created_at < %(to_ts)s
AND (%(reprocess)s OR (h.processed_at IS NULL AND (%(retry_failed)s OR h.error_count = 0)))
AND (%(namecodes)s::text[] IS NULL OR h.namecode = ANY(%(namecodes)s::text[]))
AND (%(ids)s::uuid[] IS NULL OR h.id = ANY(%(ids)s::uuid[]))
