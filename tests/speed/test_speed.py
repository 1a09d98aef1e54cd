"""pytest-benchmark suite: prefill and decode per usable backend.

    ARRAYGPT_SPEED=1 pytest tests/speed --benchmark-json=speed.json
    ARRAYGPT_SPEED=1 pytest tests/speed --benchmark-compare --benchmark-compare-fail=median:10%

ARRAYGPT_BENCH_MODEL picks the model (default 124M; 'tiny' for a smoke run). Skipped without ARRAYGPT_SPEED, so
not part of `make test`: speed is measured here, never asserted in unit tests. All backends share one process here, so idle
threads of one library can slow another; `arraygpt bench` runs each in its own process. Select one with
`-k numpy` for the cleanest figures.
"""

from __future__ import annotations

import os

import pytest

from arraygpt.backends import SPEED_BACKENDS, usable_backends
from arraygpt.engine import load_model

MODEL = os.environ.get("ARRAYGPT_BENCH_MODEL", "124M")
pytestmark = pytest.mark.skipif(not os.environ.get("ARRAYGPT_SPEED"),
                                reason="the pytest-benchmark speed suite: ARRAYGPT_SPEED=1 pytest tests/speed")


@pytest.fixture(scope="module", params=usable_backends(SPEED_BACKENDS))
def model(request):
    return load_model(MODEL, backend=request.param)


def prompt(batch, length, vocab):
    from arraygpt.benchmarks.measure.timing import fixed_prompts
    return fixed_prompts(batch, length, vocab)


@pytest.mark.parametrize("prompt_len", [128])
def test_prefill(benchmark, model, prompt_len):
    """Time to the first token: one prefill pass plus choosing the token."""
    prompts = prompt(1, prompt_len, model.config.vocab_size)
    benchmark.extra_info.update(backend=model.backend.name, model=MODEL, tokens=prompt_len)
    benchmark.pedantic(lambda: model.generate(prompts, max_new_tokens=1), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("batch", [1, 8])
def test_decode_32_tokens(benchmark, model, batch):
    """16-token prompts, 32 new tokens each (prefill included; it is a small share of the time)."""
    prompts = prompt(batch, 16, model.config.vocab_size)
    benchmark.extra_info.update(backend=model.backend.name, model=MODEL, batch=batch, new_tokens=32)
    benchmark.pedantic(lambda: model.generate(prompts, max_new_tokens=32), rounds=3, warmup_rounds=1)
