"""llama.cpp, the engine CPU users pick, through llama-cpp-python (the `peers` extra, built from source).

The scenario's checkpoint is converted to GGUF once (gguf_export.py): F32 for float32, F16 or BF16 for
float32 arithmetic on half-width weights (llama.cpp computes in float32 whatever its weights' type, so
its half types are our `--weights` rows). Our token ids go straight in (no tokenizer between), greedy.
One prompt goes through llama-cpp-python's `Llama`; a batch of B prompts through llama.cpp's batch API
(its low-level bindings): B sequences in one context, every step one llama_decode of B tokens, as
llama.cpp serves parallel sequences. Threads are the cores the worker may use (all, or --threads).
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
    """Which scenarios the peer has: float32 arithmetic on the CPU, weights in float32 or a half type."""
    return (device in (None, "cpu") and dtype == "float32" and precision == "float32"
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

    @staticmethod
    def gguf(spec: str, file_type: str):
        from engine.source import resolve_model

        from .gguf_export import ensure_gguf
        return ensure_gguf(resolve_model(spec).directory, file_type)

    def model(self, spec: str, file_type: str, n_ctx: int, logits_all: bool = False):
        key = (spec, file_type, n_ctx, logits_all)
        if key != self._key:
            self._llm = None  # one model at a time: memory figures stay per model
            path = self.gguf(spec, file_type)
            # The KV cache in float32, as ours keeps it (llama.cpp's default is float16). Its logits stay
            # 2.3e-4 of max |logit| from the float64 reference on the tiny model either way (2.6e-4 with a
            # float16 cache): the error is its float16 GELU table, not the cache.
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
        file_type = FILE_TYPE_OF[scenario.get("weights") or scenario["dtype"]]
        if scenario["batch"] > 1:
            key = (scenario["model"], file_type, n_ctx, scenario["batch"], scenario["prompt_len"])
            if key != self._key:
                self._llm = None
                self._llm = Parallel(self.llama_cpp, self.gguf(scenario["model"], file_type), scenario["batch"],
                                     n_ctx, scenario["prompt_len"], self.threads)
                self._key = key
            return self._llm
        return self.model(scenario["model"], file_type, n_ctx)

    def tokens(self, llm, scenario, on_token):
        prompts = fixed_prompts(scenario["batch"], scenario["prompt_len"], llm.n_vocab())
        if scenario["batch"] > 1:
            return llm.run(prompts, scenario["new_tokens"], on_token)
        return self.run(llm, prompts[0], scenario["new_tokens"], on_token)

    def measure(self, scenario) -> dict:
        llm = self.scenario_model(scenario)

        def one_run():
            times = []
            start = time.perf_counter()
            self.tokens(llm, scenario, lambda: times.append(time.perf_counter()))
            return summarize_run(times, start, scenario["batch"], scenario["prompt_len"])

        result = run_repeats(one_run, scenario)
        result["metrics"]["compiled"] = False  # llama.cpp's kernels are ahead of time: nothing compiles
        result["metrics"]["threads_used"] = self.threads
        return result

    def generate_ids(self, scenario) -> list:
        """The greedy ids of one run: a flat list for one prompt, a list per row for a batch."""
        return self.tokens(self.scenario_model(scenario), scenario, lambda: None)

    def parity_logits(self, spec, dtype, prompt, weights=None):
        """Every position's logits of one prompt (a model with logits_all, made for this)."""
        llm = self.model(spec, FILE_TYPE_OF[weights or dtype], -(-len(prompt[0]) // 64) * 64, logits_all=True)
        llm.reset()
        llm.eval(prompt[0])
        return np.asarray(llm.scores[: len(prompt[0])], dtype=np.float64)[None]


class Parallel:
    """B prompts as B sequences of one llama.cpp context (n_seq_max = B, a KV cache of n_ctx cells each,
    float32 like ours): the prompts in one llama_decode, then each step one llama_decode of the B new
    tokens, every row's logits read and its token chosen on the host."""

    def __init__(self, lib, path, batch: int, n_ctx: int, prompt_len: int, threads: int):
        self.lib, self.batch = lib, batch
        self.model_ptr = lib.llama_model_load_from_file(str(path).encode(), lib.llama_model_default_params())
        if not self.model_ptr:
            raise RuntimeError(f"llama.cpp could not load {path}")
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_seq_max = batch * n_ctx, batch
        params.n_batch = params.n_ubatch = batch * prompt_len
        params.n_threads = params.n_threads_batch = threads
        params.type_k = params.type_v = lib.GGML_TYPE_F32
        self.ctx = lib.llama_init_from_model(self.model_ptr, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not make a context of {batch} x {n_ctx} tokens")
        self._vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(self.model_ptr))
        self._batch = lib.llama_batch_init(batch * prompt_len, 0, 1)

    def n_vocab(self) -> int:
        return self._vocab

    def decode(self, rows: list[list[int]], start: int) -> list[int]:
        """Each row's tokens at positions start.. of its own sequence; the greedy next token of each row."""
        b, i = self._batch, 0
        for seq, tokens in enumerate(rows):
            for offset, token in enumerate(tokens):
                b.token[i], b.pos[i], b.n_seq_id[i] = token, start + offset, 1
                b.seq_id[i][0] = seq
                b.logits[i] = offset == len(tokens) - 1
                i += 1
        b.n_tokens = i
        if self.lib.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")
        last = [sum(len(r) for r in rows[: seq + 1]) - 1 for seq in range(len(rows))]
        return [int(np.argmax(np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, j), shape=(self._vocab,))))
                for j in last]

    def run(self, prompts: list[list[int]], new_tokens: int, on_token) -> list[list[int]]:
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        out = [[t] for t in self.decode(prompts, 0)]
        on_token()
        for step in range(new_tokens - 1):
            for row, token in zip(out, self.decode([r[-1:] for r in out], len(prompts[0]) + step)):
                row.append(token)
            on_token()
        return out

    def __del__(self):
        lib = getattr(self, "lib", None)
        if lib is not None and getattr(self, "ctx", None):
            lib.llama_batch_free(self._batch)
            lib.llama_free(self.ctx)
            lib.llama_model_free(self.model_ptr)
