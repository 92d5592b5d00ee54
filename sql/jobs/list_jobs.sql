-- Jobs, newest first, with live chunk and worker figures. Binds: job_id (or NULL for all), limit.
SELECT j.*,
       (SELECT count(*) FROM backfill_chunks c WHERE c.job_id = j.job_id) AS chunks_total,
       (SELECT count(*) FROM backfill_chunks c WHERE c.job_id = j.job_id AND c.status = 'done') AS chunks_done,
       (SELECT count(DISTINCT c.worker) FROM backfill_chunks c
         WHERE c.job_id = j.job_id AND c.status = 'running'
           AND c.heartbeat_at > now() - make_interval(secs => %(claim_ttl_s)s)) AS live_workers,
       (SELECT coalesce(sum(b.snapshots), 0) FROM backfill_batches b
         WHERE b.job_id = j.job_id AND b.finished_at > now() - interval '60 seconds') AS recent_snapshots,
       (SELECT extract(epoch FROM (max(b.finished_at) - min(b.finished_at))) FROM backfill_batches b
         WHERE b.job_id = j.job_id AND b.finished_at > now() - interval '60 seconds') AS recent_span_s
FROM backfill_jobs AS j
WHERE (%(job_id)s::text IS NULL OR j.job_id = %(job_id)s)
ORDER BY j.created_at DESC
LIMIT %(limit)s
