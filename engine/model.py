"""A loaded model (GPT-2 or the Llama family): parameters on one backend, the compiled steps, and the public methods."""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Iterator

from .buckets import Bucket
from .config import ITEMSIZE, GPTConfig
from .decoding import strategy_for
from .errors import CheckpointError, GenerationError, RandomWeightsWarning, SlowPathWarning
from .families import Hyper, family_of, load_checkpoint
from .generate import generate_tokens
from .hf_tokenizer import tokenizer_of
from .kv_cache import write_kv
from .layout import BATCH
from .prompts import as_prompt_list, check_prompts, padded_batch
from .runtime import Backend, resolve_backend
from .sampling import Sampling
from .source import ModelSource, resolve_model
from .steps import full_forward, prefill_step


class Model:
    def __init__(self, config: GPTConfig, params: dict, backend: Backend, dtype: str,
                 source: ModelSource | None = None, weights: str | None = None):
        self.config, self.params, self.backend, self.dtype_name = config, params, backend, dtype
        self.dtype = backend.dtype(dtype)  # the activations', the KV cache's and the logits' dtype
        self.weights_dtype = weights or dtype  # the dtype the matrices are stored (and read) in
        self.source = source
        self.family = family_of(config)
        self.n_heads = self.family.cache_heads(params, config)  # the heads the KV cache holds
        hp = Hyper.of(config, backend)  # static: a compiler traces the numbers in
        self.prefill = backend.compile(functools.partial(prefill_step, hp=hp), static_argnames=("sampling",))
        # A prompt's cache slots [0, P) are written with a static start (its own compile cache under jax.jit).
        self.write_prefix = backend.compile(functools.partial(write_kv), static_argnames=("start",),
                                            donate_argnames=("cache",))
        self._forward = backend.compile(functools.partial(full_forward, hp=hp))
        # How the tokens after the first are made, from what the backend declares it can do.
        self.decoding = strategy_for(backend, hp)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """What stop_at_eos stops at: the config's eos_token_id, and every other id a Llama-family config lists."""
        return (self.config.eos_token_id, *getattr(self.config, "more_eos_token_ids", ()))

    def call_shape(self, prompt_len: int, max_new_tokens: int) -> Bucket:
        """The shapes a call with this longest prompt runs at: its shape bucket on a compiling or recording
        backend (varied calls then share compilations and recordings; engine/buckets.py), its own shapes on
        an eager one."""
        steps = max_new_tokens - 1
        if self.backend.compiles or self.backend.records_steps:
            return Bucket.for_call(prompt_len, steps, self.config.n_positions)
        return Bucket.exact(prompt_len, steps)

    @property
    def synthetic(self) -> bool:
        """True when the weights are random (a preset), so any text they make is noise."""
        return bool(self.source and self.source.synthetic)

    @functools.cached_property
    def tokenizer(self):
        directory = self.source.directory if self.source else None
        if self.family.name == "gpt2" and not (directory and (Path(directory) / "vocab.json").exists()):
            return tokenizer_of(None)  # GPT-2's own, as a checkpoint of weights alone expects
        return tokenizer_of(directory)

    def logits(self, ids):
        """[B, T] ids (nested lists, or one flat list) -> [B, T, V] logits on the backend, no cache."""
        prompts, _ = as_prompt_list(ids)
        check_prompts(prompts, self.config.vocab_size, self.config.n_positions)
        if len({len(p) for p in prompts}) != 1:
            raise GenerationError("logits() takes rows of equal length; use generate() for mixed lengths")
        xp, rows = self.backend.xp, padded_batch(prompts, self.backend.multiple(BATCH))
        logits = self._forward(self.params, xp.asarray(rows, dtype=xp.int32, device=self.backend.device_for((BATCH, None))))
        return logits if len(rows) == len(prompts) else logits[:len(prompts), ...]

    def stream(self, prompts, max_new_tokens: int = 40, temperature: float = 0.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None,
               stop_at_eos: bool = False) -> Iterator[list[int | None]]:
        """Yield each step's new id for every prompt (None for a prompt that already stopped)."""
        rows, _ = as_prompt_list(prompts)
        sampling = Sampling(temperature, top_k, top_p)
        if stop_at_eos and self.config.eos_token_id is None:
            raise GenerationError("stop_at_eos: this model's config.json has no eos_token_id to stop at")
        return generate_tokens(self, rows, max_new_tokens, sampling, seed,
                               self.stop_ids if stop_at_eos else None)

    def generate(self, prompts, max_new_tokens: int = 40, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, stop_at_eos: bool = False):
        """The new ids for each prompt (without the stop token). One flat prompt gives one flat list."""
        rows, single = as_prompt_list(prompts)
        new = [[] for _ in rows]
        for step in self.stream(rows, max_new_tokens, temperature, top_k, top_p, seed, stop_at_eos):
            for out, token in zip(new, step):
                if token is not None:
                    out.append(token)
        return new[0] if single else new

    def __repr__(self):
        where = self.source.describe() if self.source else "in memory"
        weights = f" with {self.weights_dtype} weights" if self.weights_dtype != self.dtype_name else ""
        kind = "GPT-2" if self.family.name == "gpt2" else self.config.model_type
        return (f"<Model {kind} {self.config.n_layer}x{self.config.n_embd} ({self.config.n_params / 1e6:.0f}M) "
                f"on {self.backend.name} {self.dtype_name}{weights}, {where}>")


def check_fits_memory(config: GPTConfig, weights: str, where) -> None:
    """Refuse, before a byte is converted, a model whose parameters alone exceed this machine's memory."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    need = config.n_params * ITEMSIZE.get(weights, 4)
    if need > memory:
        raise CheckpointError(f"{where}: {config.n_params:,} parameters in {weights} need {need / 1e9:.1f} GB, "
                              f"more than this machine's {memory / 1e9:.1f} GB of memory")


def load_model(spec: str | Path, backend: str | Backend = "numpy", dtype: str = "float32",
               device: str | None = None, seed: int = 0, progress=None, weights: str | None = None) -> Model:
    """Load GPT-2 from a preset ('124M': synthetic weights, cached), a local HF directory or a hub id.

    dtype is the compute dtype (activations, KV cache, logits). weights, if given, stores the matrices
    the products read (linear weights, wte) in another dtype: dtype="float32", weights="bfloat16" is
    mixed precision, half the bytes per decode step with float32 arithmetic around the products."""
    backend = resolve_backend(backend, device)
    backend.dtype(dtype)  # fail on an unsupported dtype before reading gigabytes
    weights = weights or dtype
    backend.dtype(weights)
    if ITEMSIZE.get(weights, 0) > ITEMSIZE.get(dtype, 0):
        raise GenerationError(f"weights in {weights} are wider than the {dtype} arithmetic that would read them; "
                              f"use weights of {dtype} or narrower (bfloat16, float16)")
    for name in dict.fromkeys((dtype, weights)):
        if name in getattr(backend, "slow_dtypes", {}):
            warnings.warn(f"{name} on {backend.name}: {backend.slow_dtypes[name]}", SlowPathWarning, stacklevel=2)
    source = resolve_model(spec, seed=seed, progress=progress)
    config, tensors = load_checkpoint(source.directory)
    check_fits_memory(config, weights, source.directory)
    family = family_of(config)
    try:
        shapes = family.shapes(config, backend)
    except ValueError as err:
        raise CheckpointError(f"{source.directory}: {err}") from None
    flat = {}
    for name, tensor in tensors.items():
        layout = family.lay_out(name, tensor.shape, config, shapes)  # [n_out, n_in], split and padded to shards
        stored_as = weights if family.is_matrix(name) else family.tensor_dtype(name, dtype)
        try:  # the adapter also refuses NaN and infinity, read on the host as the file is mapped
            flat[name] = backend.from_host(tensor, stored_as, layout)
            if name == family.table and "lm_head.weight" not in tensors and stored_as in backend.tied_head_copies:
                # tied logits from a second copy that the products alone read (+ the table's bytes)
                head = family.lay_out("lm_head.weight", tensor.shape, config, shapes)
                flat["lm_head.weight"] = backend.from_host(tensor, stored_as, head)
        except CheckpointError as err:
            raise CheckpointError(f"{source.directory / 'model.safetensors'}: {err}") from None
        # Resident pages of the file are dropped: a copy does not need them, and a view (NumPy's
        # untransposed tensors) faults back in only what generation reads.
        tensor.release()
    if source.synthetic:
        mark = source.synthetic
        warnings.warn(f"{mark['preset']} has random weights (a preset with {mark['preset']}'s shapes, seed {mark['seed']}): its "
                      "speed is real, its text is noise; load a checkpoint directory or hub id for real weights",
                      RandomWeightsWarning, stacklevel=2)
    return Model(config, family.nest_params(flat, config), backend, dtype, source, weights)

