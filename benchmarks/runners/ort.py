"""ONNX Runtime, the other engine a CPU user picks: the scenario's checkpoint exported to ONNX with its KV
cache (onnx_export.py), ORT's transformer fusions applied, its CPU execution provider (CUDA where a GPU
build of onnxruntime is installed and the scenario runs on a GPU).

The prompt runs through the cached graph with an empty past, then one token per step: the present keys
and values of a step are the next step's past (they stay ORT values; no copy to NumPy between steps),
greedy, each token chosen on the host. Threads: the cores the worker may use.
"""

from __future__ import annotations

import os
import time

import numpy as np

from arraygpt.engine.families import read_config
from arraygpt.engine.source import resolve_model

from ..measure.timing import Plan, fixed_prompts, run_repeats, summarize_run
from ..records import Measured, Scenario
from . import import_for_peer
from .onnx_export import cache_shape, ensure_onnx


class OrtRunner:
    def __init__(self, device=None, precision: str = "float32", profile_to: str | None = None):
        # the CPU, float32 (its rule in PEERS); profile_to: ORT's own profiler writes there (studies/step_ops.py)
        self.ort = import_for_peer("ort", "onnxruntime", "onnxruntime")
        self.threads = len(os.sched_getaffinity(0))
        self.profile_to = profile_to
        self._spec, self._sessions = None, None

    def session(self, path):
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.profile_to:
            options.enable_profiling = True
            options.profile_file_prefix = self.profile_to
        return self.ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @staticmethod
    def graphs(spec: str):
        """(step graph, full graph, config) of a checkpoint, exported on first use."""

        directory = resolve_model(spec).directory
        return (*ensure_onnx(directory), read_config(directory / "config.json"))

    def sessions(self, spec: str):
        """(step session, config): loaded once per worker (the full graph only for parity, then dropped)."""
        if spec != self._spec:
            self._sessions = None  # one model at a time: memory figures stay per model
            step, _, config = self.graphs(spec)
            self._sessions = (self.session(step), config)
            self._spec = spec
        return self._sessions

    def run(self, spec: str, prompts: list[list[int]], new_tokens: int, on_token) -> list[list[int]]:
        step, config = self.sessions(spec)
        B, P = len(prompts), len(prompts[0])
        H, D = cache_shape(config)
        ids = np.asarray(prompts, dtype=np.int64)
        empty = np.zeros((B, H, 0, D), dtype=np.float32)
        feeds = {"input_ids": ids, "attention_mask": np.ones((B, P), dtype=np.int64),
                 "position_ids": np.broadcast_to(np.arange(P, dtype=np.int64), (B, P)).copy()}
        feeds |= {f"past_{i // 2}_{'kv'[i % 2]}": empty for i in range(2 * config.n_layer)}
        names = [o.name for o in step.get_outputs()]
        tokens = []
        for t in range(new_tokens):
            outputs = step.run_with_ort_values(names, {k: self.ort.OrtValue.ortvalue_from_numpy(v) if
                                                       isinstance(v, np.ndarray) else v for k, v in feeds.items()})
            token = outputs[0].numpy().argmax(-1)
            tokens.append(token)
            on_token()
            if t == new_tokens - 1:
                break
            total = P + t + 1
            feeds = {"input_ids": token[:, None].astype(np.int64), "attention_mask": np.ones((B, total), dtype=np.int64),
                     "position_ids": np.full((B, 1), total - 1, dtype=np.int64)}
            feeds |= {name.replace("present", "past"): value for name, value in zip(names[1:], outputs[1:])}
        return np.stack(tokens, axis=1).tolist()

    def measure(self, scenario: Scenario, plan: Plan) -> Measured:
        _, config = self.sessions(scenario.model)
        prompts = fixed_prompts(scenario.batch, scenario.prompt_len, config.vocab_size)

        def one_run():
            times = []
            start = time.perf_counter()
            self.run(scenario.model, prompts, scenario.new_tokens, lambda: times.append(time.perf_counter()))
            return summarize_run(times, start, scenario.batch, scenario.prompt_len)

        # the graph was optimized once, when exported and loaded: nothing compiles here
        return run_repeats(one_run, scenario, plan).with_figures(compiled=False, threads_used=self.threads)

    def generate_ids(self, scenario: Scenario) -> list[list[int]]:
        _, config = self.sessions(scenario.model)
        prompts = fixed_prompts(scenario.batch, scenario.prompt_len, config.vocab_size)
        return self.run(scenario.model, prompts, scenario.new_tokens, lambda: None)

    def parity_logits(self, spec, dtype, prompt, weights=None):
        full = self.session(self.graphs(spec)[1])
        return np.asarray(full.run(None, {"input_ids": np.asarray(prompt, dtype=np.int64)})[0], dtype=np.float64)
