-- Refresh the planner statistics of the snapshots table after a bulk load. Binds: none.
ANALYZE hero_snapshots
