-- The newest result of a gating step for a config fingerprint. Binds: kind, config_fingerprint.
SELECT *
FROM backfill_gates
WHERE kind = %(kind)s AND config_fingerprint = %(config_fingerprint)s
ORDER BY created_at DESC, id DESC
LIMIT 1
