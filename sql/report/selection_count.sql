-- How many snapshots a job's selection (its created_at range, namecodes, ids) holds now: the report's
-- `in_selection`; `not_taken` is that minus the job's `handled`. Binds the scope (from_ts, to_ts, namecodes, ids).
SELECT count(*) AS in_selection
FROM hero_snapshots AS h
WHERE {% include "verify/_scope.sql" %}
