-- Lock the three catalogs against other writers until this transaction ends; readers are not blocked.
-- SHARE ROW EXCLUSIVE conflicts with the ROW EXCLUSIVE lock that every ETL batch under policy placeholder
-- takes on all three catalogs (etl/placeholders.sql) before it merges any user_* row: a batch that got
-- there first is waited for (its references are then committed and seen), and a later one waits here, then
-- creates again any placeholder it needs. Binds no parameters.
LOCK TABLE troop_catalog, pet_catalog, artifact_catalog IN SHARE ROW EXCLUSIVE MODE
