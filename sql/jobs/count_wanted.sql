-- How many snapshots a job's selector wants (sizes its chunks). Binds the selector's parameters.
SELECT count(*) FROM hero_snapshots AS h WHERE {% include "jobs/_selector.sql" %}
