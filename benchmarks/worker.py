"""`python -m benchmarks.worker JOB.json`: one runner's scenarios in a process of its own.

Timing each library in its own process keeps another library's idle BLAS/OpenMP threads off the
cores. Events go to the parent as JSON lines on the original stdout; anything the libraries print
goes to stderr, which the parent keeps as the worker's log.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def end_with_parent(parent: int | None) -> None:
    """Linux: this worker gets SIGKILL when the bench that started it dies, however it dies."""
    import ctypes
    import signal
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:  # the parent was already gone before the call
        os._exit(1)


def main(job_path: str) -> int:
    job = json.loads(open(job_path).read())
    end_with_parent(job.get("parent"))
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints (ours or a library's, Python or C) must not corrupt the protocol
    sys.stdout = sys.stderr

    def emit(**event):
        protocol.write(json.dumps(event) + "\n")
        protocol.flush()

    from .runners import make_runner
    try:
        runner, probe_backend = make_runner(job["runner"], job["device"], job.get("precision", "float32"),
                                            job.get("mesh"))
    except Exception as err:  # BackendUnavailable and friends: the parent marks the scenarios
        emit(event="fatal", message=f"{type(err).__name__}: {err}")
        return 0
    scenarios = job["scenarios"]
    device_key = probe_backend.device_key()
    precision = job.get("precision", "float32")
    if job.get("roofline"):
        from .roofline import probe
        from .scenarios import product_key
        # float32 always: memory bandwidth does not depend on the dtype a library reads it with, and a
        # library's slow half-precision matrix x vector must show as a low % of the machine's ceiling, not
        # as a low ceiling (a bfloat16-only run once put jax-loop at 111%).
        for dtype in dict.fromkeys(["float32"] + [s.get("weights") or s["dtype"] for s in scenarios]):
            key = product_key(dtype, precision)
            try:
                emit(event="probe", key=key, dtype=dtype, precision=precision, device=probe_backend.device_name(),
                     device_key=device_key, **probe(probe_backend, dtype))
            except Exception as err:
                emit(event="probe_error", key=key, dtype=dtype, precision=precision, device_key=device_key,
                     message=f"{type(err).__name__}: {err}")
    for reference in job.get("references", []):
        numerics = {s["numerics"]: s for s in scenarios if s["model"] == reference["model"]}
        for label, s in numerics.items():
            try:
                expected = np.load(reference["path"])
                got = runner.parity_logits(reference["model"], s["dtype"], reference["prompt"], s.get("weights"))
                max_abs = float(np.abs(got - expected).max())
                emit(event="parity", model=reference["model"], numerics=label, max_abs=max_abs,
                     relative=max_abs / float(np.abs(expected).max()))
            except Exception as err:
                emit(event="parity_error", model=reference["model"], numerics=label,
                     message=f"{type(err).__name__}: {err}")
    for scenario in scenarios:
        emit(event="start", id=scenario["id"])
        try:
            result = runner.measure(scenario)
            emit(event="result", id=scenario["id"], status="ok", device_key=device_key, **result)
        except Exception as err:
            emit(event="result", id=scenario["id"], status="error", device_key=device_key,
                 message=f"{type(err).__name__}: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
