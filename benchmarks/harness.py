"""Runs scenarios runner by runner in worker processes and keeps every finished result on disk.

The result file is rewritten atomically after each scenario, so Ctrl-C or a crashed worker loses
nothing that had finished; "complete" says whether the whole suite ran.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from arraygpt.engine import load_model
from arraygpt.engine.families import read_config
from arraygpt.engine.source import resolve_model

from .jsonio import write_json_atomic
from .judge.derive import derive
from .measure.environment import environment
from .measure.load import machine_probe
from .measure.timing import PARITY_PROMPT_LEN, fixed_prompts, pool_rounds
from .outputs import free_path, identity
from .records import Probe, Result, Run, Scenario

TEMP_PREFIX = "arraygpt-bench-"


def remove_stale_temporaries() -> None:
    """Temporary directories of benches that were SIGKILLed (no handler ran): their pid, in the name, is
    gone. Every other way a bench ends removes its own."""
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{TEMP_PREFIX}*-*"):
        pid = path.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def model_configs(scenarios) -> dict:
    """Each model's shape, recorded so that a report can compute floors without the checkpoint."""

    configs = {}
    for spec in dict.fromkeys(s.model for s in scenarios):
        try:
            configs[spec] = dataclasses.asdict(read_config(resolve_model(spec).directory / "config.json"))
        except Exception:  # a model that cannot be resolved fails in its worker, with the reason
            pass
    return configs


def reference_logits(model_spec: str, path: Path) -> dict:
    """NumPy float64 logits of a fixed prompt: the parity reference every runner is compared with."""
    model = load_model(model_spec, backend="numpy", dtype="float64")
    prompt = fixed_prompts(1, PARITY_PROMPT_LEN, model.config.vocab_size, seed=1)
    np.save(path, np.asarray(model.logits(prompt)))
    return {"model": model_spec, "prompt": prompt, "path": str(path)}


class Bench:
    def __init__(self, scenarios, suite: dict, json_path=None, roofline=True, parity=True, on_event=None,
                 target_ci: float | None = None, ci_budget_s: float = 60.0, rounds: int = 1):
        self.scenarios, self.json_path = scenarios, json_path
        self.roofline, self.parity, self.rounds = roofline, parity, rounds
        self.target_ci, self.ci_budget_s = target_ci, ci_budget_s
        self.on_event = on_event or (lambda event: None)
        # the run so far: the workers' records gathered into it, never changed in place (each event makes a new one)
        self.record = Run(environment=environment(), suite=suite, scenarios=[s.to_json() for s in scenarios],
                          models=model_configs(scenarios))
        self.logs: dict[str, str] = {}
        # What is at the output now (an earlier result replaced with --force, or nothing): a file that takes
        # its place during the run is someone else's and is never replaced.
        self._at_output = identity(json_path) if json_path else None

    def save(self) -> Run:
        """The run so far, derived, written to the JSON file if there is one. If another file has appeared
        at that path since the last save, it is left alone and the results go to NAME-2.json (an event
        says so; json_path then names the new file)."""
        run = derive(self.record)
        if self.json_path:
            try:
                # never over a file that appeared meanwhile: checked and replaced in one step (jsonio.py)
                while write_json_atomic(self.json_path, run.to_json(), expect=self._at_output) is None:
                    moved = free_path(Path(self.json_path))
                    self.on_event({"event": "moved", "from": str(self.json_path), "to": str(moved)})
                    self.json_path, self._at_output = moved, None
            except OSError as err:  # a full disk: the CLI says so in one line, naming the file
                raise OSError(err.errno, err.strerror, str(self.json_path)) from None
            self._at_output = identity(self.json_path)
        return run

    def run(self) -> Run:
        remove_stale_temporaries()
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
            tmp = Path(tmp)
            references = []
            if self.parity:
                for index, model in enumerate(dict.fromkeys(s.model for s in self.scenarios)):
                    self.on_event({"event": "reference", "model": model})
                    references.append(reference_logits(model, tmp / f"reference-{index}.npy"))
            # One worker process per runner, device, threads and precision; ours first, then the peers. The
            # machine's speed is probed before the first, between each two and after the last (validity).
            # With rounds, the runners go again, in the opposite order each time (ABC CBA ABC: drift over the
            # run falls on every runner alike), each round with its share of the repeats, which are pooled.
            ordered = sorted(self.scenarios, key=lambda s: (s.is_peer, s.label))
            groups = [(label, list(group)) for label, group in itertools.groupby(ordered, key=lambda s: s.label)]
            previous = None
            for round_index in range(self.rounds):
                for label, group in groups[::-1] if round_index % 2 else groups:
                    self.probe_machine(after=previous, before=label)
                    self.run_worker(label, group, references if round_index == 0 else [], tmp, round_index)
                    previous = label
            self.probe_machine(after=previous, before=None)
        # Complete: every scenario has a result and none ended in an error (a crashed or killed worker's
        # scenarios are errors). Skipped runners (not installed here) do not make a run incomplete.
        finished = {r.id for r in self.record.results if r.status in ("ok", "skipped") and not r.round_errors}
        self.update(complete=all(s.id in finished for s in self.scenarios))
        return self.save()

    def update(self, **fields) -> None:
        self.record = dataclasses.replace(self.record, **fields)

    def probe_machine(self, after: str | None, before: str | None) -> None:
        """The cheap machine probe (validity.machine_probe) between two workers, recorded in order."""
        self.on_event({"event": "drift_probe"})
        self.update(drift=[*self.record.drift, {"after": after, "before": before, **machine_probe()}])

    def round_share(self, scenario: Scenario, round_index: int) -> dict:
        """What a worker gets of a scenario in a round: the scenario, its share of the repeats (they add up to
        the scenario's, the first rounds taking one more where they do not divide), and in the last round, for
        --target-ci, the headline figures of the rounds before (measure/worker.plans_of reads it)."""
        share = scenario.repeats // self.rounds + (round_index < scenario.repeats % self.rounds)
        job = {"scenario": scenario.to_json(), "repeats": max(1, share)}
        earlier = self.measured(scenario.id)
        if round_index == self.rounds - 1 and earlier:
            job["prior"] = earlier.headline_values()
        return job

    def run_worker(self, label, scenarios, references, tmp: Path, round_index: int = 0):
        first = scenarios[0]
        stem = "".join(c if c.isalnum() or c == "-" else "-" for c in label) + f"-{round_index}"
        job = tmp / f"job-{stem}.json"
        job.write_text(json.dumps({"parent": os.getpid(), "runner": first.runner, "device": first.device, "precision": first.precision,
                                   "mesh": first.mesh, "threads": first.threads, "ci_budget_s": self.ci_budget_s,
                                   "target_ci": self.target_ci if round_index == self.rounds - 1 else None,
                                   # a mesh's probes would multiply the work by its devices: measured on one;
                                   # the roofline probes and parity once, in the first round
                                   "roofline": self.roofline and first.mesh is None and round_index == 0,
                                   "references": references,
                                   "scenarios": [self.round_share(s, round_index) for s in scenarios]}))
        log = tmp / f"log-{stem}.txt"
        pending = {s.id: s for s in scenarios}
        with open(log, "w") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "arraygpt.benchmarks.measure.worker", str(job)], stdout=subprocess.PIPE,
                                       stderr=log_file, text=True, cwd=Path(__file__).resolve().parent.parent)
            try:
                for line in process.stdout:
                    event = json.loads(line)
                    self.handle(label, event, pending)
                process.wait()
            except BaseException:
                process.kill()
                process.wait()
                self.save()
                raise
        self.logs[label] = log.read_text()
        for scenario in pending.values():  # the worker died before reaching these
            tail = " | ".join(self.logs[label].strip().splitlines()[-3:])
            self.add_error(scenario, f"worker exited with code {process.returncode}: {tail}")

    def handle(self, label, event, pending):
        """One event of a worker (measure/worker.py) gathered into the run."""
        kind = event.pop("event")
        if kind == "fatal":
            for scenario in list(pending.values()):
                if self.measured(scenario.id) or not event.get("skipped", True):
                    self.add_error(scenario, event["message"])  # measured in an earlier round, or a crash
                else:
                    self.add_result(Result.of(scenario, "skipped", message=event["message"]))
            pending.clear()
        elif kind in ("probe", "probe_error"):
            probes = self.record.probes
            self.update(probes=probes | {label: probes.get(label, {}) | {event["key"]: Probe.from_json(event)}})
        elif kind in ("parity", "parity_error"):
            parity = self.record.parity
            self.update(parity=parity | {label: parity.get(label, {}) | {f"{event['model']}/{event['numerics']}": event}})
        elif kind == "result":
            result = Result.from_json(event)
            scenario = pending.pop(result.id)
            earlier = self.measured(scenario.id)
            if earlier is None:
                self.add_result(result)
            elif result.ok:  # a later round: pooled into the first's record
                self.put(pool_rounds(earlier, result))
                self.on_event({"event": "done", "id": scenario.id, "status": "ok"})
            else:
                self.add_error(scenario, result.message)
            event = {"status": result.status}
        self.on_event({"event": kind, "runner": label, **{k: v for k, v in event.items() if k in ("id", "status")}})

    def measured(self, scenario_id: str) -> Result | None:
        """The scenario's ok result so far (an earlier round's), or None."""
        return next((r for r in self.record.results if r.id == scenario_id and r.ok), None)

    def put(self, result: Result) -> None:
        """A scenario's row in place of the one it had (pooled, or with a round's failure), saved."""
        self.update(results=[result if r.id == result.id else r for r in self.record.results])
        self.save()

    def add_error(self, scenario: Scenario, message: str):
        """A scenario that failed: its error row, or, where an earlier round measured it, that round's row
        kept with the failure beside it (round_errors; the run is then incomplete)."""
        earlier = self.measured(scenario.id)
        if earlier is not None:
            self.put(dataclasses.replace(earlier, round_errors=[*(earlier.round_errors or ()), message]))
            self.on_event({"event": "done", "id": scenario.id, "status": "error"})
        else:
            self.add_result(Result.of(scenario, "error", message=message))

    def add_result(self, result: Result):
        """A scenario's row. One that replaces an error row of an earlier round (a worker that crashed or was
        killed there, measured again now) keeps that failure as round_errors: the run stays incomplete and
        the row says it has fewer repeats than asked."""
        before = [r for r in self.record.results if r.id == result.id]
        if result.ok:
            failed = [r.message for r in before if r.status == "error"]
            failed += [m for r in before for m in r.round_errors or ()]
            if failed:
                result = dataclasses.replace(result, round_errors=failed)
        self.update(results=[r for r in self.record.results if r.id != result.id] + [result])
        self.save()
        self.on_event({"event": "done", "id": result.id, "status": result.status,
                       "message": result.message if not result.ok else None})
