"""Our engine on one backend."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from arraygpt.engine import load_model
from arraygpt.engine.checkpoint import leaves
from arraygpt.engine.config import ITEMSIZE
from arraygpt.engine.layout import CACHE_AXES
from arraygpt.engine.prompts import padded_batch

from ..measure.timing import Plan, fixed_prompts, run_repeats, summarize_run
from ..records import Measured, Scenario


def per_device_bytes(model, scenario: Scenario) -> dict:
    """On a mesh: the weight bytes the first device holds and its share of the KV cache (batch over dp,
    heads over tp), as the adapter reports them."""
    backend, config = model.backend, model.config
    batch = len(padded_batch([[0]] * scenario.batch, backend.multiple("batch")))
    slots = model.call_shape(scenario.prompt_len, scenario.new_tokens).n_slots
    cache = 2 * config.n_layer * backend.shard_bytes((batch, model.n_heads, slots, config.head_dim), CACHE_AXES,
                                                     ITEMSIZE[model.dtype_name])
    return {"weights": backend.first_device_bytes(leaves(model.params)), "kv_cache": cache}


class EngineRunner:
    def __init__(self, backend):
        self.backend, self._models = backend, {}

    def model(self, spec, dtype, weights=None):
        key = (spec, dtype, weights)
        if key not in self._models:
            self._models.clear()  # one model at a time: memory figures stay per model
            options = {"weights": weights} if weights and weights != dtype else {}
            self._models[key] = load_model(spec, backend=self.backend, dtype=dtype, **options)
        return self._models[key]

    def scenario_model(self, scenario: Scenario):
        return self.model(scenario.model, scenario.dtype, scenario.weights)

    def measure(self, scenario: Scenario, plan: Plan) -> Measured:
        model = self.scenario_model(scenario)
        prompts = fixed_prompts(scenario.batch, scenario.prompt_len, model.config.vocab_size)

        def one_run():
            self.backend.synchronize()
            start = time.perf_counter()
            times = [time.perf_counter() for _ in model.stream(prompts, max_new_tokens=scenario.new_tokens)]
            return summarize_run(times, start, scenario.batch, scenario.prompt_len,
                                 decoded_in_one_call=not model.decoding.streams)

        measured = run_repeats(one_run, scenario, plan)
        # a compile time means something only where the steps or some products are compiled, or the step is
        # recorded (a capture per shape bucket: its seconds are kept apart too)
        numerics = (scenario.dtype, scenario.weights or scenario.dtype)
        compiled = (bool(self.backend.compiles) or bool(self.backend.records_steps)
                    or numerics in self.backend.compiled_products)
        return measured.with_figures(
            device_bytes=self.backend.memory_in_use(), compiled=compiled,
            products=self.backend.products_for(*numerics),
            capture_s=getattr(model.decoding.step, "capture_s", None) if self.backend.records_steps else None,
            # the shapes it ran at: a compiling backend's bucket (first_call_s compiled it, unless an earlier
            # scenario of this worker had the same bucket)
            shape=dataclasses.asdict(model.call_shape(scenario.prompt_len, scenario.new_tokens)),
            per_device=per_device_bytes(model, scenario) if self.backend.mesh_label is not None else None)

    def parity_logits(self, spec, dtype, prompt, weights=None):
        model = self.model(spec, dtype, weights)
        return np.asarray(self.backend.to_host(model.logits(prompt)), dtype=np.float64)
