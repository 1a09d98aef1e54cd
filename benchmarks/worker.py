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


def make_runner(name, device):
    from backends import get_backend

    from .measure import EngineRunner, HFRunner, PicoGPTRunner
    if name == "hf":
        return HFRunner(device), get_backend("torch", device=device)
    if name == "picogpt":
        return PicoGPTRunner(), get_backend("numpy")
    backend = get_backend(name, device=device)
    return EngineRunner(backend), backend


def main(job_path: str) -> int:
    job = json.loads(open(job_path).read())
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints (ours or a library's, Python or C) must not corrupt the protocol
    sys.stdout = sys.stderr

    def emit(**event):
        protocol.write(json.dumps(event) + "\n")
        protocol.flush()

    try:
        runner, probe_backend = make_runner(job["runner"], job["device"])
    except Exception as err:  # BackendUnavailable and friends: the parent marks the scenarios
        emit(event="fatal", message=f"{type(err).__name__}: {err}")
        return 0
    scenarios = job["scenarios"]
    if job.get("roofline"):
        from .roofline import probe
        for dtype in dict.fromkeys(s["dtype"] for s in scenarios):
            try:
                emit(event="probe", dtype=dtype, device=probe_backend.device_name(), **probe(probe_backend, dtype))
            except Exception as err:
                emit(event="probe_error", dtype=dtype, message=f"{type(err).__name__}: {err}")
    for reference in job.get("references", []):
        if not any(s["model"] == reference["model"] for s in scenarios):
            continue
        for dtype in dict.fromkeys(s["dtype"] for s in scenarios if s["model"] == reference["model"]):
            try:
                expected = np.load(reference["path"])
                got = runner.parity_logits(reference["model"], dtype, reference["prompt"])
                max_abs = float(np.abs(got - expected).max())
                emit(event="parity", model=reference["model"], dtype=dtype, max_abs=max_abs,
                     relative=max_abs / float(np.abs(expected).max()))
            except Exception as err:
                emit(event="parity_error", model=reference["model"], dtype=dtype, message=f"{type(err).__name__}: {err}")
    for scenario in scenarios:
        emit(event="start", id=scenario["id"])
        try:
            result = runner.measure(scenario)
            emit(event="result", id=scenario["id"], status="ok", **result)
        except Exception as err:
            emit(event="result", id=scenario["id"], status="error", message=f"{type(err).__name__}: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
