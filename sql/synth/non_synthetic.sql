-- How many snapshots did not come from the synthetic generator (its rows carry source = the bound value).
-- Binds: source.
SELECT count(*) AS n FROM hero_snapshots WHERE source IS DISTINCT FROM %(source)s
