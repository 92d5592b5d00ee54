-- How many placeholder catalog rows exist, per kind. Binds no parameters.
SELECT (SELECT count(*) FROM troop_catalog WHERE meta ->> 'placeholder' = 'true') AS troop,
       (SELECT count(*) FROM pet_catalog WHERE meta ->> 'placeholder' = 'true') AS pet,
       (SELECT count(*) FROM artifact_catalog WHERE meta ->> 'placeholder' = 'true') AS artifact
