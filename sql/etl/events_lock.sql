-- Taken right before a batch's events insert (etl/events.sql) and held to its commit: batches draw their
-- event ids one at a time, so id order is commit order and a reader that sees id N has seen every id below
-- N (`events tail`'s cursor never skips a later-committing lower id). Binds no parameters.
SELECT pg_advisory_xact_lock(hashtext('starforge-backfill etl_events'))
