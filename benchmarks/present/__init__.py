"""Presenting: tables, csv/jsonl/md, the cross-run report, plots, from records and what judge/ derives."""
