"""The bottom of benchmarks/: a bench file as typed records (run.py), its schema's checks and upgrade
(schema.py), and how rows are named (labels.py). Imports nothing else of benchmarks/."""

from .labels import headline, metric_of, numerics_label, product_key, where_label, worker_label  # noqa: F401
from .run import (Derived, Latency, Metrics, Probe, Record, Result, Run, Stat, Validity,  # noqa: F401
                  as_run, label)
