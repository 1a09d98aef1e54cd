"""Runs scenarios runner by runner in worker processes and keeps every finished result on disk.

The result file is rewritten atomically after each scenario, so Ctrl-C or a crashed worker loses
nothing that had finished; "complete" says whether the whole suite ran.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .environment import environment
from .jsonio import write_json_atomic
from .measure import PARITY_PROMPT_LEN, fixed_prompts
from .roofline import decode_floor_tps, prefill_ceiling_tps

SCHEMA = 1


def reference_logits(model_spec: str, path: Path) -> dict:
    """NumPy float64 logits of a fixed prompt: the parity reference every runner is compared with."""
    from engine import load_model
    model = load_model(model_spec, backend="numpy", dtype="float64")
    prompt = fixed_prompts(1, PARITY_PROMPT_LEN, model.config.vocab_size, seed=1)
    np.save(path, np.asarray(model.logits(prompt)))
    return {"model": model_spec, "prompt": prompt, "path": str(path)}


class Bench:
    def __init__(self, scenarios, suite: dict, json_path=None, roofline=True, parity=True, on_event=None):
        self.scenarios, self.json_path = scenarios, json_path
        self.roofline, self.parity = roofline, parity
        self.on_event = on_event or (lambda event: None)
        self.doc = {"kind": "arraygpt-bench", "schema": SCHEMA, "environment": environment(),
                    "suite": suite, "scenarios": [s.to_json() for s in scenarios], "probes": {}, "parity": {},
                    "results": [], "complete": False}
        self.logs: dict[str, str] = {}

    def save(self):
        self.derive()
        if self.json_path:
            write_json_atomic(self.json_path, self.doc)

    def run(self) -> dict:
        with tempfile.TemporaryDirectory(prefix="arraygpt-bench-") as tmp:
            tmp = Path(tmp)
            references = []
            if self.parity:
                for index, model in enumerate(dict.fromkeys(s.model for s in self.scenarios)):
                    self.on_event({"event": "reference", "model": model})
                    references.append(reference_logits(model, tmp / f"reference-{index}.npy"))
            key = lambda s: (s.runner, s.device)  # noqa: E731
            groups = itertools.groupby(sorted(self.scenarios, key=lambda s: (s.is_peer, *map(str, key(s)))), key=key)
            for (runner, device), group in groups:
                self.run_worker(runner, device, list(group), references, tmp)
        self.doc["complete"] = True
        self.save()
        return self.doc

    def run_worker(self, runner, device, scenarios, references, tmp: Path):
        label = runner + (f":{device}" if device else "")
        job = tmp / f"job-{label.replace(':', '-')}.json"
        job.write_text(json.dumps({"runner": runner, "device": device, "roofline": self.roofline,
                                   "references": references, "scenarios": [s.to_json() for s in scenarios]}))
        log = tmp / f"log-{label.replace(':', '-')}.txt"
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
            self.doc["probes"].setdefault(label, {})[event["dtype"]] = event
        elif kind in ("parity", "parity_error"):
            self.doc["parity"].setdefault(label, {})[f"{event['model']}/{event['dtype']}"] = event
        elif kind == "result":
            scenario = pending.pop(event.pop("id"))
            self.add_result(scenario.to_json() | event)
        self.on_event({"event": kind, "runner": label, **{k: v for k, v in event.items() if k in ("id", "status")}})

    def add_result(self, result):
        self.doc["results"].append(result)
        self.save()
        self.on_event({"event": "done", "id": result["id"], "status": result["status"]})

    def derive(self):
        """Roofline percentages and ratios to the HF peer, from the probes of the same run."""
        from engine.config import GPTConfig
        from engine.source import resolve_model
        configs = {}
        hf = {}
        for r in self.doc["results"]:
            if r["status"] == "ok" and r["runner"] == "hf":
                hf[(r["model"], r["dtype"], r["batch"], r["prompt_len"], r["new_tokens"])] = r["metrics"]
        for r in self.doc["results"]:
            if r["status"] != "ok":
                continue
            if r["model"] not in configs:
                configs[r["model"]] = GPTConfig.from_hf_json(resolve_model(r["model"]).directory / "config.json")
            config, m, derived = configs[r["model"]], r["metrics"], {}
            label = r["runner"] + (f":{r['device']}" if r["device"] else "")
            probe = self.doc["probes"].get(label, {}).get(r["dtype"], {})
            if "decode_tps" in m and "bandwidth_bytes_s" in probe:
                floor = decode_floor_tps(config, r["dtype"], r["batch"], r["prompt_len"], r["new_tokens"],
                                         probe["bandwidth_bytes_s"])
                derived |= {"decode_floor_tps": floor, "decode_roofline": m["decode_tps"]["median"] / floor}
            if "matmul_flops_s" in probe:
                ceiling = prefill_ceiling_tps(config, r["batch"], r["prompt_len"], probe["matmul_flops_s"])
                derived |= {"prefill_ceiling_tps": ceiling, "prefill_roofline": m["prefill_tps"]["median"] / ceiling}
            peer = hf.get((r["model"], r["dtype"], r["batch"], r["prompt_len"], r["new_tokens"]))
            if peer and r["runner"] != "hf":
                for key in ("decode_tps", "prefill_tps"):
                    if key in m and key in peer:
                        derived[f"{key}_vs_hf"] = m[key]["median"] / peer[key]["median"]
            parity = self.doc["parity"].get(label, {}).get(f"{r['model']}/{r['dtype']}", {})
            if "relative" in parity:
                derived["parity_relative"] = parity["relative"]
            r["derived"] = derived
