"""Runs scenarios runner by runner in worker processes and keeps every finished result on disk.

The result file is rewritten atomically after each scenario, so Ctrl-C or a crashed worker loses
nothing that had finished; "complete" says whether the whole suite ran.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .derive import SCHEMA, derive
from .environment import environment
from .jsonio import write_json_atomic
from .timing import PARITY_PROMPT_LEN, fixed_prompts


TEMP_PREFIX = "arraygpt-bench-"


def remove_stale_temporaries() -> None:
    """Temporary directories of benches that were SIGKILLed (no handler ran): their pid, in the name, is
    gone. Every other way a bench ends removes its own."""
    import shutil
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{TEMP_PREFIX}*-*"):
        pid = path.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def model_configs(scenarios) -> dict:
    """Each model's shape, recorded so that a report can compute floors without the checkpoint."""
    import dataclasses

    from engine.config import GPTConfig
    from engine.source import resolve_model
    configs = {}
    for spec in dict.fromkeys(s.model for s in scenarios):
        try:
            configs[spec] = dataclasses.asdict(GPTConfig.from_hf_json(resolve_model(spec).directory / "config.json"))
        except Exception:  # a model that cannot be resolved fails in its worker, with the reason
            pass
    return configs


def reference_logits(model_spec: str, path: Path) -> dict:
    """NumPy float64 logits of a fixed prompt: the parity reference every runner is compared with."""
    from engine import load_model
    model = load_model(model_spec, backend="numpy", dtype="float64")
    prompt = fixed_prompts(1, PARITY_PROMPT_LEN, model.config.vocab_size, seed=1)
    np.save(path, np.asarray(model.logits(prompt)))
    return {"model": model_spec, "prompt": prompt, "path": str(path)}


class Bench:
    def __init__(self, scenarios, suite: dict, json_path=None, roofline=True, parity=True, on_event=None,
                 target_ci: float | None = None, ci_budget_s: float = 60.0):
        self.scenarios, self.json_path = scenarios, json_path
        self.roofline, self.parity = roofline, parity
        self.target_ci, self.ci_budget_s = target_ci, ci_budget_s
        self.on_event = on_event or (lambda event: None)
        self.doc = {"kind": "arraygpt-bench", "schema": SCHEMA, "environment": environment(),
                    "suite": suite, "scenarios": [s.to_json() for s in scenarios], "models": model_configs(scenarios),
                    "probes": {}, "parity": {}, "drift": [], "results": [], "complete": False}
        self.logs: dict[str, str] = {}

    def save(self):
        derive(self.doc)
        if self.json_path:
            try:
                write_json_atomic(self.json_path, self.doc)
            except OSError as err:  # a full disk: the CLI says so in one line, naming the file
                raise OSError(err.errno, err.strerror, str(self.json_path)) from None

    def run(self) -> dict:
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
            ordered = sorted(self.scenarios, key=lambda s: (s.is_peer, s.label))
            previous = None
            for label, group in itertools.groupby(ordered, key=lambda s: s.label):
                self.probe_machine(after=previous, before=label)
                self.run_worker(label, list(group), references, tmp)
                previous = label
            self.probe_machine(after=previous, before=None)
        # Complete: every scenario has a result and none ended in an error (a crashed or killed worker's
        # scenarios are errors). Skipped runners (not installed here) do not make a run incomplete.
        finished = {r["id"] for r in self.doc["results"] if r["status"] in ("ok", "skipped")}
        self.doc["complete"] = all(s.id in finished for s in self.scenarios)
        self.save()
        return self.doc

    def probe_machine(self, after: str | None, before: str | None) -> None:
        """The cheap machine probe (validity.machine_probe) between two workers, recorded in order."""
        from .validity import machine_probe
        self.on_event({"event": "drift_probe"})
        self.doc["drift"].append({"after": after, "before": before, **machine_probe()})

    def run_worker(self, label, scenarios, references, tmp: Path):
        first = scenarios[0]
        stem = "".join(c if c.isalnum() or c == "-" else "-" for c in label)
        job = tmp / f"job-{stem}.json"
        job.write_text(json.dumps({"parent": os.getpid(), "runner": first.runner, "device": first.device, "precision": first.precision,
                                   "mesh": first.mesh, "threads": first.threads, "target_ci": self.target_ci,
                                   "ci_budget_s": self.ci_budget_s,
                                   # a mesh's probes would multiply the work by its devices: measured on one
                                   "roofline": self.roofline and first.mesh is None, "references": references,
                                   "scenarios": [s.to_json() for s in scenarios]}))
        log = tmp / f"log-{stem}.txt"
        pending = {s.id: s for s in scenarios}
        with open(log, "w") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", str(job)], stdout=subprocess.PIPE,
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
            self.add_result(scenario.to_json() | {"status": "error",
                                                  "message": f"worker exited with code {process.returncode}: {tail}"})

    def handle(self, label, event, pending):
        kind = event.pop("event")
        if kind == "fatal":
            for scenario in list(pending.values()):
                self.add_result(scenario.to_json() | {"status": "skipped", "message": event["message"]})
            pending.clear()
        elif kind in ("probe", "probe_error"):
            self.doc["probes"].setdefault(label, {})[event["key"]] = event
        elif kind in ("parity", "parity_error"):
            self.doc["parity"].setdefault(label, {})[f"{event['model']}/{event['numerics']}"] = event
        elif kind == "result":
            scenario = pending.pop(event.pop("id"))
            self.add_result(scenario.to_json() | event)
        self.on_event({"event": kind, "runner": label, **{k: v for k, v in event.items() if k in ("id", "status")}})

    def add_result(self, result):
        self.doc["results"].append(result)
        self.save()
        self.on_event({"event": "done", "id": result["id"], "status": result["status"]})
