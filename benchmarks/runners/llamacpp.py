"""llama.cpp, the engine CPU users pick, through llama-cpp-python (the `peers` extra, built from source).

The scenario's checkpoint is converted to GGUF once (gguf_export.py): F32 for float32, F16 or BF16 for
float32 arithmetic on half-width weights (llama.cpp computes in float32 whatever its weights' type, so
its half types are our `--weights` rows). Our token ids go straight in (no tokenizer between), greedy.
Every run goes through llama.cpp's batch API (llama-cpp-python's low-level bindings): B prompts are B
sequences of one context, every step one llama_decode of B tokens, as llama.cpp serves parallel
sequences (B = 1 is the plain case). Threads are the cores the worker may use (all, or --threads).

Q8_0 (`--weights q8_0`) is llama.cpp's own 8-bit format: a numerics row of its own, never beside ours.
It loads without llama.cpp's extra buffer types (use_extra_bufts off): with them, the AMX int8 and
repacked Q8_0 kernels crashed (SIGSEGV in llama_decode) on this project's Xeon with AMX, on the tiny
model and on 124M; its rows therefore measure llama.cpp's plain AVX-512 Q8_0 kernels.
"""

from __future__ import annotations

import os
import time

import numpy as np

from arraygpt.engine.layout import round_up
from arraygpt.engine.source import resolve_model

from ..measure.timing import Plan, fixed_prompts, run_repeats, summarize_run
from ..records import Measured, Scenario
from . import LLAMACPP_FILE_TYPES as FILE_TYPE_OF, import_for_peer
from .gguf_export import ensure_gguf


class LlamaCppRunner:
    def __init__(self, device=None, precision: str = "float32"):  # the CPU, float32 (its rule in PEERS)
        self.llama_cpp = import_for_peer("llamacpp", "llama_cpp", "llama-cpp-python")
        self.threads = len(os.sched_getaffinity(0))
        self._key, self._llm = None, None

    @staticmethod
    def gguf(spec: str, file_type: str):

        return ensure_gguf(resolve_model(spec).directory, file_type)

    def sequences(self, spec: str, weights: str, batch: int, n_ctx: int, n_batch: int) -> "Sequences":
        """One model and context at a time (memory figures stay per model), reused while the key holds."""
        key = (spec, weights, batch, n_ctx, n_batch)
        if key != self._key:
            self._llm = None
            file_type = FILE_TYPE_OF[weights]
            self._llm = Sequences(self.llama_cpp, self.gguf(spec, file_type), batch, n_ctx, n_batch, self.threads,
                                  extra_bufts=file_type != "Q8_0")
            self._key = key
        return self._llm

    def scenario_model(self, scenario: Scenario) -> "Sequences":
        n_ctx = round_up(scenario.prompt_len + scenario.new_tokens, 64)
        return self.sequences(scenario.model, scenario.weights or scenario.dtype, scenario.batch,
                              n_ctx, scenario.batch * scenario.prompt_len)

    def tokens(self, llm, scenario, on_token):
        prompts = fixed_prompts(scenario.batch, scenario.prompt_len, llm.n_vocab())
        return llm.run(prompts, scenario.new_tokens, on_token)

    def measure(self, scenario: Scenario, plan: Plan) -> Measured:
        llm = self.scenario_model(scenario)

        def one_run():
            times = []
            start = time.perf_counter()
            self.tokens(llm, scenario, lambda: times.append(time.perf_counter()))
            return summarize_run(times, start, scenario.batch, scenario.prompt_len)

        # llama.cpp's kernels are ahead of time: nothing compiles
        return run_repeats(one_run, scenario, plan).with_figures(compiled=False, threads_used=self.threads)

    def generate_ids(self, scenario: Scenario) -> list:
        """The greedy ids of one run: a flat list for one prompt, a list per row for a batch."""
        rows = self.tokens(self.scenario_model(scenario), scenario, lambda: None)
        return rows[0] if scenario.batch == 1 else rows

    def parity_logits(self, spec, dtype, prompt, weights=None):
        """Every position's logits of one prompt, [1, T, V]."""
        n_ctx = round_up(len(prompt[0]), 64)
        llm = self.sequences(spec, weights or dtype, 1, n_ctx, len(prompt[0]))
        llm.clear()
        return llm.logits(prompt[0])[None]


class Sequences:
    """B prompts as B sequences of one llama.cpp context (n_seq_max = B, a KV cache of n_ctx cells each,
    float32 like ours): the prompts in one llama_decode, then each step one llama_decode of the B new
    tokens, every row's logits read and its token chosen on the host."""

    def __init__(self, lib, path, batch: int, n_ctx: int, n_batch: int, threads: int, extra_bufts: bool = True):
        self.lib = lib
        model_params = lib.llama_model_default_params()
        model_params.use_extra_bufts = extra_bufts
        self.model_ptr = lib.llama_model_load_from_file(str(path).encode(), model_params)
        if not self.model_ptr:
            raise RuntimeError(f"llama.cpp could not load {path}")
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_seq_max = batch * n_ctx, batch
        params.n_batch = params.n_ubatch = n_batch
        params.n_threads = params.n_threads_batch = threads
        params.type_k = params.type_v = lib.GGML_TYPE_F32
        self.ctx = lib.llama_init_from_model(self.model_ptr, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not make a context of {batch} x {n_ctx} tokens")
        self._vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(self.model_ptr))
        self._batch = lib.llama_batch_init(n_batch, 0, 1)

    def n_vocab(self) -> int:
        return self._vocab

    def clear(self) -> None:
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)

    def _decode(self, rows: list[list[int]], start: int, every: bool = False) -> None:
        """Each row's tokens at positions start.. of its own sequence; logits kept for each row's last
        token (every: for every token)."""
        b, i = self._batch, 0
        for seq, tokens in enumerate(rows):
            for offset, token in enumerate(tokens):
                b.token[i], b.pos[i], b.n_seq_id[i] = token, start + offset, 1
                b.seq_id[i][0] = seq
                b.logits[i] = every or offset == len(tokens) - 1
                i += 1
        b.n_tokens = i
        if self.lib.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def _row_logits(self, j: int) -> np.ndarray:
        return np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, j), shape=(self._vocab,))

    def decode(self, rows: list[list[int]], start: int) -> list[int]:
        """The greedy next token of each row after its tokens at positions start.."""
        self._decode(rows, start)
        last = [sum(len(r) for r in rows[: seq + 1]) - 1 for seq in range(len(rows))]
        return [int(np.argmax(self._row_logits(j))) for j in last]

    def logits(self, tokens: list[int]) -> np.ndarray:
        """[T, V] float64: every position's logits of one sequence from position 0 (a cleared context)."""
        self._decode([tokens], 0, every=True)
        return np.stack([self._row_logits(j) for j in range(len(tokens))]).astype(np.float64)

    def run(self, prompts: list[list[int]], new_tokens: int, on_token) -> list[list[int]]:
        self.clear()
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
