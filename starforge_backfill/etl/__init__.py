"""The ETL core: the snapshot contract (parse, validate, map) and its loaders."""
