"""The bottom of benchmarks/: a bench file as typed records (run.py) of scenarios (scenario.py), its schema's
places, figure checks and upgrade (schema.py), and how rows are named (labels.py). Imports nothing else of
benchmarks/."""

from .labels import headline, is_peer, metric_of, numerics_label, product_key, where_label, worker_label  # noqa: F401
from .run import (Derived, Latency, Measured, Metrics, Probe, Record, Result, Run, Stat, Validity,  # noqa: F401
                  as_run, label, settings_line)
from .scenario import Scenario  # noqa: F401
