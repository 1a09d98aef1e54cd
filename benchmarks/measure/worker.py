"""`python -m arraygpt.benchmarks.measure.worker JOB.json`: one runner's scenarios in a process of its own.

Timing each library in its own process keeps another library's idle BLAS/OpenMP threads off the
cores. Events go to the parent as JSON lines on the original stdout; anything the libraries print
goes to stderr, which the parent keeps as the worker's log.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import warnings

import numpy as np
from threadpoolctl import threadpool_info

from arraygpt.backends import BackendUnavailable
from arraygpt.engine.errors import RandomWeightsWarning

from ..judge.roofline import QUANTIZED
from ..parity import logit_difference
from ..records import Result, Scenario, product_key
from ..runners import PEERS, PeerNotInstalled, make_runner
from .probes import probe
from .timing import Plan


def end_with_parent(parent: int | None) -> None:
    """Linux: this worker gets SIGKILL when the bench that started it dies, however it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:  # the parent was already gone before the call
        os._exit(1)


def pin_cores(threads: int) -> None:
    """Run on the first `threads` cores this process may use, and tell the libraries not loaded yet
    (OpenMP, OpenBLAS, MKL read these when they load)."""
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cores[:threads])
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


def threads_in_use(backend) -> dict:
    """What the worker runs on, asked of the OS and of each library: the cores it may use, each BLAS or
    OpenMP pool threadpoolctl finds, and the library's own count where it has one."""
    pools = {f"{p['internal_api']}:{p.get('prefix', '')}": p["num_threads"] for p in threadpool_info()}
    return {"cores": len(os.sched_getaffinity(0)), "pools": pools, "library": backend.threads()}


def open_protocol():
    """The events' channel: the process's stdout, kept for them alone (stray prints, ours or a library's, Python
    or C, go to stderr, the parent's log of this worker). Returns emit(**event)."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(**event):
        protocol.write(json.dumps(event) + "\n")
        protocol.flush()
    return emit


def probe_roofline(emit, probe_backend, scenarios, precision: str, device_key: str, own_kernels: bool = True) -> None:
    """The device's bandwidth and matmul rate with this runner's library, once per product the scenarios use.

    float32 always: memory bandwidth does not depend on the dtype a library reads it with, and a library's slow
    half-precision matrix x vector must show as a low % of the machine's ceiling, not as a low ceiling (a
    bfloat16-only run once put jax-loop at 111%). A quantized format (a peer's Q8_0) has no product of ours to
    probe: its rows use float32's ceilings, as do all rows of a peer whose probes are not its own kernels'
    (own_kernels False: Peer.probes_own_kernels)."""
    others = [s.weights or s.dtype for s in scenarios if s.weights not in QUANTIZED] if own_kernels else []
    for dtype in dict.fromkeys(["float32"] + others):
        key = product_key(dtype, precision)
        try:
            emit(event="probe", key=key, dtype=dtype, precision=precision, device=probe_backend.device_name(),
                 device_key=device_key, **probe(probe_backend, dtype))
        except Exception as err:
            emit(event="probe_error", key=key, dtype=dtype, precision=precision, device_key=device_key,
                 message=f"{type(err).__name__}: {err}")


def check_parity(emit, runner, scenarios, references) -> None:
    """Each numerics' logits of the reference prompt against the float64 reference the parent saved: the largest
    difference, and the greedy token at each prompt position, ours against the reference's."""
    for reference in references:
        numerics = {s.numerics: s for s in scenarios if s.model == reference["model"]}
        for label, s in numerics.items():
            try:
                expected = np.load(reference["path"])
                got = runner.parity_logits(reference["model"], s.dtype, reference["prompt"], s.weights)
                max_abs, relative = logit_difference(got, expected)
                agreement = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
                emit(event="parity", model=reference["model"], numerics=label, max_abs=max_abs, relative=relative,
                     token_agreement=agreement)
            except Exception as err:
                emit(event="parity_error", model=reference["model"], numerics=label,
                     message=f"{type(err).__name__}: {err}")


def measure_scenarios(emit, runner, plans: list[tuple[Scenario, Plan]], probe_backend, threads: int | None) -> None:
    """Each scenario timed as its plan says: its Result (ok with what was measured, or the error) sent as an event."""
    for scenario, plan in plans:
        emit(event="start", id=scenario.id)
        try:
            measured = runner.measure(scenario, plan)
            if threads:
                measured = measured.with_figures(threads=threads_in_use(probe_backend))
            result = Result.of(scenario, "ok", device_key=plan.device_key, metrics=measured.metrics,
                               repeats=measured.repeats)
        except Exception as err:
            result = Result.of(scenario, "error", device_key=plan.device_key, message=f"{type(err).__name__}: {err}")
        emit(event="result", **result.to_json())


def plans_of(job: dict, device_key: str) -> list[tuple[Scenario, Plan]]:
    """The job's scenarios, each with how it is timed here: this round's share of its repeats, the device its
    energy is read on, and the adaptive repeats' target, budget and earlier rounds' figures."""
    return [(scenario, Plan(warmup=scenario.warmup, repeats=entry["repeats"], device_key=device_key,
                            target_ci=job.get("target_ci"), ci_budget_s=job.get("ci_budget_s", 60.0),
                            prior=tuple(entry.get("prior", ()))))
            for entry in job["scenarios"] for scenario in [Scenario.from_json(entry["scenario"])]]


def main(job_path: str) -> int:
    """One runner's scenarios: make the runner, probe the roofline, check parity, measure; every outcome an event."""
    job = json.loads(open(job_path).read())
    end_with_parent(job.get("parent"))
    emit = open_protocol()
    warnings.filterwarnings("ignore", category=RandomWeightsWarning)  # a bench measures speed, not the weights
    threads = job.get("threads")
    if threads:
        pin_cores(threads)  # before the runner loads its library: XLA sizes its pool from the affinity
    precision = job.get("precision", "float32")
    try:
        runner, probe_backend = make_runner(job["runner"], job["device"], precision, job.get("mesh"))
        if threads:
            probe_backend.limit_threads(threads)
    except Exception as err:  # the parent marks the scenarios: skipped where the runner cannot run here (not
        # installed, no such device), failed where it could and broke (a library that failed to load)
        emit(event="fatal", message=f"{type(err).__name__}: {err}",
             skipped=isinstance(err, (BackendUnavailable, PeerNotInstalled)))
        return 0
    device_key = probe_backend.device_key()
    plans = plans_of(job, device_key)
    scenarios = [scenario for scenario, _ in plans]
    if job.get("roofline"):
        probe_roofline(emit, probe_backend, scenarios, precision, device_key,
                       own_kernels=job["runner"] not in PEERS or PEERS[job["runner"]].probes_own_kernels)
    check_parity(emit, runner, scenarios, job.get("references", []))
    measure_scenarios(emit, runner, plans, probe_backend, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
