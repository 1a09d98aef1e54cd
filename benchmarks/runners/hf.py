"""Hugging Face transformers, the peer users would pick instead, on the scenario's device and precision.

- hf: the checkpoint's own class (GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM) eager, a prefill
  forward, then one forward per token with past_key_values, greedy,
  the token brought to the host each step, as generate() does without its bookkeeping.
- hf-static: generate() with cache_implementation="static", HF's fastest documented path. On CUDA,
  transformers compiles the forward by itself (torch.compile with CUDA graphs) on the first calls;
  on a CPU it does not (its auto-compile is for cuda, xpu and a few others), so there it is the static
  cache alone. Each result records whether the forward was compiled and the warm-up time apart.
"""

from __future__ import annotations

import dataclasses
import time

from arraygpt.backends.torch_tf32 import set_cuda_tf32
from arraygpt.engine.source import resolve_model

from ..measure.timing import Plan, fixed_prompts, run_repeats, summarize_run
from ..records import Measured, Scenario


class HFRunner:
    def __init__(self, device, precision: str = "float32"):
        import torch
        self.torch, self.device, self.precision = torch, device, precision
        torch.set_grad_enabled(False)
        self._models = {}

    def model(self, spec, dtype):
        from transformers import AutoModelForCausalLM

        key = (spec, dtype)
        if key not in self._models:
            self._models.clear()
            directory = resolve_model(spec).directory
            model = AutoModelForCausalLM.from_pretrained(directory, dtype=getattr(self.torch, dtype))
            self._models[key] = model.to(self.device).eval()
        if self.device.type == "cuda":
            set_cuda_tf32(self.precision == "tf32")
        return self._models[key]

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def prompts(self, scenario, vocab_size):
        ids = fixed_prompts(scenario.batch, scenario.prompt_len, vocab_size)
        return self.torch.tensor(ids, device=self.device)

    def run(self, model, prompts, new_tokens: int, on_token) -> list[list[int]]:
        out = model(prompts, use_cache=True)
        token = out.logits[:, -1, :].argmax(-1).cpu()
        tokens = [token]
        on_token()
        for _ in range(new_tokens - 1):
            out = model(token[:, None].to(self.device), past_key_values=out.past_key_values, use_cache=True)
            token = out.logits[:, -1, :].argmax(-1).cpu()
            tokens.append(token)
            on_token()
        return self.torch.stack(tokens, dim=1).tolist()

    def warmup_runs(self, warmup: int) -> int:
        return warmup

    def measure(self, scenario: Scenario, plan: Plan) -> Measured:
        model = self.model(scenario.model, scenario.dtype)
        prompts = self.prompts(scenario, model.config.vocab_size)

        def one_run():
            self.sync()
            times = []
            start = time.perf_counter()
            self.run(model, prompts, scenario.new_tokens, lambda: times.append(time.perf_counter()))
            return summarize_run(times, start, scenario.batch, scenario.prompt_len)

        measured = run_repeats(one_run, scenario, dataclasses.replace(plan, warmup=self.warmup_runs(plan.warmup)))
        return measured.with_figures(device_bytes=self.torch.cuda.memory_allocated(self.device)
                                     if self.device.type == "cuda" else None)

    def generate_ids(self, scenario: Scenario) -> list[list[int]]:
        model = self.model(scenario.model, scenario.dtype)
        return self.run(model, self.prompts(scenario, model.config.vocab_size), scenario.new_tokens, lambda: None)

    def parity_logits(self, spec, dtype, prompt, weights=None):
        model = self.model(spec, dtype)
        return model(self.torch.tensor(prompt, device=self.device)).logits.double().cpu().numpy()


class HFStaticRunner(HFRunner):
    def run(self, model, prompts, new_tokens: int, on_token) -> list[list[int]]:
        from transformers.generation.streamers import BaseStreamer

        class Clock(BaseStreamer):
            """generate() hands the prompt, then each step's new ids (already on the host), to put()."""
            seen_prompt = False

            def put(self, value):
                if self.seen_prompt:
                    on_token()
                self.seen_prompt = True

            def end(self):
                pass

        out = model.generate(prompts, attention_mask=self.torch.ones_like(prompts), do_sample=False,
                             max_new_tokens=new_tokens, eos_token_id=None, pad_token_id=0,
                             cache_implementation="static", streamer=Clock())
        return out[:, prompts.shape[1]:].tolist()

    def warmup_runs(self, warmup: int) -> int:
        # torch.compile may compile again on the second call (new shapes are marked dynamic): both
        # warm-up calls count as warm-up, reported as first_call_s and compile_s.
        return max(2, warmup)

    def measure(self, scenario: Scenario, plan: Plan) -> Measured:
        measured = super().measure(scenario, plan)
        model = self.model(scenario.model, scenario.dtype)
        return measured.with_figures(compiled=hasattr(model, "_compiled_call"))  # set by HF's auto-compile
