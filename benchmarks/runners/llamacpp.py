"""llama.cpp, the engine CPU users pick, through llama-cpp-python (the `peers` extra, built from source).

The scenario's checkpoint is converted to GGUF once (gguf_export.py): F32 for float32, F16 or BF16 for
float32 arithmetic on half-width weights (llama.cpp computes in float32 whatever its weights' type, so
its half types are our `--weights` rows). Our token ids go straight in (no tokenizer between), greedy,
one sequence: llama-cpp-python's `Llama` evaluates one sequence at a time. Threads are the cores the worker
may use (all of them, or --threads), for decode and for prefill alike.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..timing import fixed_prompts, run_repeats, summarize_run

# the weights' dtype of a scenario -> the GGUF file type llama.cpp reads them from
FILE_TYPE_OF = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
INSTALL_HINT = ("pip install 'arraygpt[peers]' (llama-cpp-python builds llama.cpp from source: about 10 "
                "CPU-minutes, once; pip keeps the wheel)")


def runs(dtype: str, precision: str, weights: str | None, batch: int, device: str | None) -> bool:
    """Which scenarios the peer has: float32 arithmetic on the CPU, weights in float32 or a half type,
    one sequence."""
    return (device in (None, "cpu") and dtype == "float32" and precision == "float32" and batch == 1
            and (weights or dtype) in FILE_TYPE_OF)


class LlamaCppRunner:
    def __init__(self):
        try:
            import llama_cpp
        except ImportError:
            raise RuntimeError(f"llama-cpp-python is not installed: {INSTALL_HINT}") from None
        self.llama_cpp = llama_cpp
        self.threads = len(os.sched_getaffinity(0))
        self._key, self._llm = None, None

    def model(self, spec: str, file_type: str, n_ctx: int, logits_all: bool = False):
        from engine.source import resolve_model

        from .gguf_export import ensure_gguf
        key = (spec, file_type, n_ctx, logits_all)
        if key != self._key:
            self._llm = None  # one model at a time: memory figures stay per model
            path = ensure_gguf(resolve_model(spec).directory, file_type)
            # The KV cache in float32, as ours keeps it (llama.cpp's default is float16: 2.6e-4 of max |logit|
            # from the float64 reference on the tiny model, against 5e-7 with float32)
            self._llm = self.llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                                             n_threads=self.threads, n_threads_batch=self.threads,
                                             type_k=self.llama_cpp.GGML_TYPE_F32, type_v=self.llama_cpp.GGML_TYPE_F32,
                                             logits_all=logits_all, verbose=False)
            self._key = key
        return self._llm

    def last_logits(self, llm) -> np.ndarray:
        """The logits of the last token evaluated (llama.cpp keeps only those without logits_all)."""
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))

    def run(self, llm, prompt: list[int], new_tokens: int, on_token) -> list[int]:
        """Greedy: the prompt in one batch, then one token at a time, each chosen on the host."""
        llm.reset()
        llm.eval(prompt)
        tokens = [int(np.argmax(self.last_logits(llm)))]
        on_token()
        for _ in range(new_tokens - 1):
            llm.eval(tokens[-1:])
            tokens.append(int(np.argmax(self.last_logits(llm))))
            on_token()
        return tokens

    def scenario_model(self, scenario):
        n_ctx = -(-(scenario["prompt_len"] + scenario["new_tokens"]) // 64) * 64
        return self.model(scenario["model"], FILE_TYPE_OF[scenario.get("weights") or scenario["dtype"]], n_ctx)

    def measure(self, scenario) -> dict:
        llm = self.scenario_model(scenario)
        prompt = fixed_prompts(1, scenario["prompt_len"], llm.n_vocab())[0]

        def one_run():
            times = []
            start = time.perf_counter()
            self.run(llm, prompt, scenario["new_tokens"], lambda: times.append(time.perf_counter()))
            return summarize_run(times, start, 1, scenario["prompt_len"])

        result = run_repeats(one_run, scenario)
        result["metrics"]["compiled"] = False  # llama.cpp's kernels are ahead of time: nothing compiles
        result["metrics"]["threads_used"] = self.threads
        return result

    def generate_ids(self, scenario) -> list[int]:
        llm = self.scenario_model(scenario)
        prompt = fixed_prompts(1, scenario["prompt_len"], llm.n_vocab())[0]
        return self.run(llm, prompt, scenario["new_tokens"], lambda: None)

    def parity_logits(self, spec, dtype, prompt, weights=None):
        """Every position's logits of one prompt (a model with logits_all, made for this)."""
        llm = self.model(spec, FILE_TYPE_OF[weights or dtype], -(-len(prompt[0]) // 64) * 64, logits_all=True)
        llm.reset()
        llm.eval(prompt[0])
        return np.asarray(llm.scores[: len(prompt[0])], dtype=np.float64)[None]
