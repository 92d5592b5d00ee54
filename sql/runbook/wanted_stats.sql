-- How many snapshots a job with this selector would take and how big they are. Returns n, total_bytes,
-- avg_bytes, p95_bytes, max_bytes. Binds: the selector's parameters (jobs/_selector.sql).
SELECT count(*) AS n,
       sum(coalesce(h.size_bytes, pg_column_size(h.raw))) AS total_bytes,
       avg(coalesce(h.size_bytes, pg_column_size(h.raw))) AS avg_bytes,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY coalesce(h.size_bytes, pg_column_size(h.raw))) AS p95_bytes,
       max(coalesce(h.size_bytes, pg_column_size(h.raw))) AS max_bytes
FROM hero_snapshots AS h
WHERE {% include "jobs/_selector.sql" %}
