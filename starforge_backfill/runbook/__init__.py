"""The runbook steps as plain Python (no click, no rich): preflight, sample, dry-run, plan, canary, verify, report."""
