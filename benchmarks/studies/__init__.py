"""One-off measurements that inform a decision (a kernel, a flag, a tolerance), each runnable on its own
with `python -m arraygpt.benchmarks.studies.<name> --help`; their figures go to benchmarks/results/NOTES.md."""
