"""What else ran while a scenario was timed, and how the machine's speed drifted: measured in the worker
(MachineLoad around the timed repeats) and in the bench's own process (machine_probe between runners), recorded
in the run's JSON, judged afterwards by benchmarks/judge/validity.py."""

from __future__ import annotations

import os
import time

import numpy as np

from .probes import median_time

# ---- what else ran: /proc/stat and the worker's own CPU time ----

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _system_ticks() -> tuple[int, int, int]:
    """(busy, stolen, total) CPU ticks of the whole machine since boot (/proc/stat's first line)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    busy = user + nice + system + irq + softirq
    return busy, steal, busy + idle + iowait + steal


def _own_ticks() -> int:
    """This process's CPU ticks, every thread, and its waited-for children's."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime


class MachineLoad:
    """Context manager around timed work: `record` is {"other_cores", "own_cores", "steal", "wall_s"}
    (cores busy on average with other processes and with this one, the share of CPU time stolen), or
    {"unmeasured": reason} where the machine has no /proc."""

    def __enter__(self):
        try:
            self._start = (time.monotonic(), _system_ticks(), _own_ticks())
        except (OSError, ValueError, IndexError) as err:
            self._start, self.record = None, {"unmeasured": f"no CPU accounting here ({type(err).__name__})"}
        return self

    def __exit__(self, *exc):
        if self._start is None:
            return
        wall0, (busy0, steal0, total0), own0 = self._start
        wall = max(time.monotonic() - wall0, 1e-9)
        busy, steal, total = _system_ticks()
        own = _own_ticks() - own0
        # Each CPU's counters tick every 1/_TICK s, so each sum is uncertain by about a tick per CPU: the
        # figures keep the ticks they come from, and judge() takes that much off before it compares.
        other = max(0, (busy - busy0) - own)
        self.record = {"other_cores": other / _TICK / wall, "own_cores": own / _TICK / wall,
                       "steal": (steal - steal0) / (total - total0) if total > total0 else 0.0, "wall_s": wall,
                       "ticks": {"other": other, "steal": steal - steal0, "total": total - total0,
                                 "cpus": os.cpu_count() or 1, "per_s": _TICK}}


def pooled_load(earlier: dict, later: dict) -> dict:
    """Two rounds' load records of one scenario as one: ticks added up, rates over the total time."""
    if "ticks" not in earlier or "ticks" not in later:
        return earlier or later
    wall = earlier["wall_s"] + later["wall_s"]
    ticks = {k: earlier["ticks"][k] + later["ticks"][k] for k in ("other", "steal", "total")}
    ticks |= {"cpus": earlier["ticks"]["cpus"], "per_s": earlier["ticks"]["per_s"]}
    own = earlier["own_cores"] * earlier["wall_s"] + later["own_cores"] * later["wall_s"]
    return {"other_cores": ticks["other"] / ticks["per_s"] / wall, "own_cores": own / wall,
            "steal": ticks["steal"] / ticks["total"] if ticks["total"] else 0.0, "wall_s": wall, "ticks": ticks}


# ---- how the machine drifted: a cheap probe between runners ----

def machine_probe(repeats: int = 7) -> dict:
    """The machine's speed now, cheaply (~0.3 s): NumPy float32 matrix x vector over 256 MiB (more than any
    last-level cache here) and a 1024^3 product, the best of `repeats` each (a lone hiccup must not read as
    drift; a disturbance that lasts lowers them all). Taken in the bench's own process while no worker runs."""
    start = time.monotonic()
    matrix = np.full((8192, 8192), 0.5, dtype=np.float32)
    vector = np.full(8192, 0.25, dtype=np.float32)
    square = np.full((1024, 1024), 0.5, dtype=np.float32)

    bandwidth = matrix.nbytes / median_time(lambda: matrix @ vector, repeats, pick=min)
    matmul = 2 * 1024**3 / median_time(lambda: square @ square, repeats, pick=min)
    return {"bandwidth_bytes_s": bandwidth, "matmul_flops_s": matmul, "seconds": time.monotonic() - start}
