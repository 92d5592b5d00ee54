"""Runbook subcommands, one module each, imported lazily by `starforge_backfill.cli`."""
