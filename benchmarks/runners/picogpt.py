"""picoGPT (the seed): its loop as published, one float32 sequence, no KV cache."""

from __future__ import annotations

import time

import numpy as np

from arraygpt.engine.checkpoint import load_checkpoint, nest_params
from arraygpt.engine.source import resolve_model

from .. import picogpt_gpt2 as picogpt
from ..measure.timing import Plan, fixed_prompts, run_repeats, summarize_run
from ..records import Measured, Scenario


class PicoGPTRunner:
    def __init__(self, device=None, precision: str = "float32"):  # the CPU, float32 (its rule in PEERS)
        self._params = None

    def params(self, spec):
        if self._params is None or self._params[0] != spec:
            config, tensors = load_checkpoint(resolve_model(spec).directory)
            flat = {name: np.asarray(t.data) for name, t in tensors.items()}
            self._params = (spec, config, nest_params(flat, config.n_layer))
        return self._params[1], self._params[2]

    def run(self, scenario: Scenario, inputs, on_token):
        config, params = self.params(scenario.model)
        for _ in range(scenario.new_tokens):  # picoGPT's loop, with a clock read per token
            logits = picogpt.gpt2(inputs, **params, n_head=config.n_head)
            inputs.append(int(np.argmax(logits[-1])))
            on_token()
        return inputs

    def measure(self, scenario: Scenario, plan: Plan) -> Measured:
        config, _ = self.params(scenario.model)
        prompt = fixed_prompts(1, scenario.prompt_len, config.vocab_size)[0]

        def one_run():
            times = []
            start = time.perf_counter()
            self.run(scenario, list(prompt), lambda: times.append(time.perf_counter()))
            return summarize_run(times, start, 1, scenario.prompt_len)

        return run_repeats(one_run, scenario, plan).with_figures(compiled=False)  # NumPy as published: nothing compiles

    def parity_logits(self, spec, dtype, prompt, weights=None):
        config, params = self.params(spec)
        return np.stack([picogpt.gpt2(list(row), **params, n_head=config.n_head) for row in prompt]).astype(np.float64)
