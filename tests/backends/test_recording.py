"""The recorded decode (engine/decoding.Recorded, backends/recording.py) end to end on a shipped adapter: torch
on the CPU with record=True replays its step through HostGraph, the CPU stand-in with a CUDA graph's
semantics. What a GPU runs beyond this is the graph's own capture and replay (`pytest -m gpu`, below).
The oracle is the step-by-step loop (the eager path, itself checked against HF transformers and NumPy
float64 elsewhere) and NumPy's float64 model."""

from __future__ import annotations

import dataclasses

import pytest

from arraygpt.engine import load_model

from helpers import backend_or_skip, random_ids

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def recorded(small_checkpoint):
    return load_model(small_checkpoint, backend=backend_or_skip("torch", "cpu", record=True))


@pytest.fixture(scope="module")
def stepped(small_checkpoint):
    return load_model(small_checkpoint, backend=backend_or_skip("torch", "cpu", record=False))


def recordings(model) -> dict:
    return model.decoding.step.recordings


def test_torch_records_on_cuda_only_unless_told(small_checkpoint, recorded, stepped):
    from arraygpt.backends import get_backend
    assert get_backend("torch", device="cpu").records_steps is False
    assert get_backend("torch-eager").name == "torch-eager" and get_backend("torch-eager").records_steps is False
    assert type(recorded.decoding).__name__ == "Recorded" and type(stepped.decoding).__name__ == "StepByStep"


def test_greedy_and_sampled_tokens_equal_step_by_step_replay_after_replay(recorded, stepped):
    prompts = [random_ids(n, 100, seed=40 + n) for n in (3, 7)]
    for kwargs in (dict(), dict(temperature=0.9, top_k=20, top_p=0.9, seed=5), dict(temperature=1.3, seed=11)):
        expected = stepped.generate(prompts, max_new_tokens=14, **kwargs)
        assert recorded.generate(prompts, max_new_tokens=14, **kwargs) == expected
        assert recorded.generate(prompts, max_new_tokens=14, **kwargs) == expected  # replayed, not recorded again


def test_the_float64_model_agrees(small_checkpoint, recorded):
    reference = load_model(small_checkpoint, backend="numpy", dtype="float64")
    prompts = [random_ids(n, 100, seed=n) for n in (3, 8)]
    assert recorded.generate(prompts, max_new_tokens=10) == reference.generate(prompts, max_new_tokens=10)


def test_one_recording_per_shape_bucket(small_checkpoint, stepped):
    """Another prompt length or token count in the same buckets replays; another bucket or batch records."""
    model = load_model(small_checkpoint, backend=backend_or_skip("torch", "cpu", record=True))
    cases = [([random_ids(5, 100, seed=1)], 9),                    # prompt bucket 8, 8 steps: 16 slots
             ([random_ids(6, 100, seed=2)], 8),                    # same buckets: replayed
             ([random_ids(7, 100, seed=3)], 7),                    # same buckets again
             ([random_ids(12, 100, seed=4)], 9),                   # prompt bucket 16: recorded anew
             ([random_ids(5, 100, seed=5), random_ids(3, 100, seed=6)], 9)]  # batch 2: recorded anew
    counts = []
    for prompts, n in cases:
        assert model.generate(prompts, max_new_tokens=n) == stepped.generate(prompts, max_new_tokens=n)
        counts.append(len(recordings(model)))
    assert counts == [1, 1, 1, 2, 3]


def test_stop_tokens_and_streaming(small_checkpoint):
    prompts = [random_ids(4, 100, seed=20), random_ids(9, 100, seed=21)]
    model = load_model(small_checkpoint, backend=backend_or_skip("torch", "cpu", record=True))
    stepped = load_model(small_checkpoint, backend=backend_or_skip("torch", "cpu", record=False))
    steps = list(model.stream(prompts, max_new_tokens=12))
    assert len(steps) == 12 and steps == list(stepped.stream(prompts, max_new_tokens=12))
    stop = steps[3][0]  # the first prompt's fourth token as the stop token
    first = next(i for i, step in enumerate(steps) if step[0] == stop)
    for m in (model, stepped):
        m.config = dataclasses.replace(m.config, eos_token_id=stop)
    got = list(model.stream(prompts, max_new_tokens=12, stop_at_eos=True))
    assert got == list(stepped.stream(prompts, max_new_tokens=12, stop_at_eos=True))
    assert [step[0] for step in got[:first]] == [step[0] for step in steps[:first]]
    assert all(step[0] is None for step in got[first:])


def test_the_cache_is_written_in_place_and_copied_once_per_generation(small_checkpoint):
    """After its first step a generation copies only its small inputs (ids, slot, pads, draws): the cache it
    passes back is the recording's own, written in place by torch's index_copy_."""
    model = load_model(small_checkpoint, backend=backend_or_skip("torch", "cpu", record=True))
    step = model.decoding.step
    copied = []
    own_copy = step.copy
    step.copy = lambda static, value: (copied.append(tuple(static.shape)), own_copy(static, value))
    prompts = [random_ids(5, 100, seed=9)] * 2
    stream = model.stream(prompts, max_new_tokens=7)
    next(stream)  # the prefill's token
    next(stream)  # the first recorded step: the new cache is copied in
    cache_shape = [s for s in copied if len(s) == 4]
    assert len(cache_shape) == 2 * model.config.n_layer
    copied.clear()
    rest = list(stream)
    assert len(rest) == 5 and copied and all(len(shape) <= 1 for shape in copied), copied


def test_a_graph_captures_once_and_replays_into_the_same_outputs():
    import torch
    from arraygpt.backends.recording import HostGraph, Recorder, RecordingError
    from arraygpt.backends.torch_graphs import copy_into

    graph = HostGraph(copy_into)
    graph.capture(lambda: torch.zeros(2))
    with pytest.raises(RecordingError, match="captures once"):
        graph.capture(lambda: torch.zeros(2))

    def step(w, x, *, scale):
        return x * w * scale + 1

    recorder = Recorder(step, static_argnames=("scale",), fixed_argnames=("w",),
                        make_graph=lambda: HostGraph(copy_into), clone=torch.clone, copy=copy_into)
    w, x = torch.tensor([2.0, 3.0]), torch.tensor([1.0, 1.0])
    first = recorder(w, x, scale=2.0)
    assert first.tolist() == [5.0, 7.0] and x.tolist() == [1.0, 1.0]  # the caller's input is never written
    second = recorder(w, torch.tensor([0.0, 2.0]), scale=2.0)
    assert second is first and first.tolist() == [1.0, 13.0]  # static outputs: the last replay's values
    assert len(recorder.recordings) == 1
    recorder(w, torch.tensor([1.0, 1.0, 1.0])[:2], scale=3.0)  # another static value: another recording
    assert len(recorder.recordings) == 2
    with pytest.raises(RecordingError, match="other weights"):
        recorder(torch.tensor([2.0, 3.0]), x, scale=2.0)


def test_inductor_inside_the_recorded_step(small_checkpoint, stepped):
    """The second way (the torch-inductor variant): Inductor compiles the step, which is then recorded; on the CPU
    through the stand-in. Tokens as step by step, greedy and sampled; a second call compiles and records nothing."""
    model = load_model(small_checkpoint, backend=backend_or_skip("torch", "cpu", record=True, inductor=True))
    assert model.backend.name == "torch-inductor"
    prompts = [random_ids(5, 100, seed=60), random_ids(3, 100, seed=61)]
    for kwargs in (dict(), dict(temperature=0.9, top_k=20, seed=8)):
        assert model.generate(prompts, max_new_tokens=9, **kwargs) == stepped.generate(prompts, max_new_tokens=9, **kwargs)
    assert len(recordings(model)) == 2  # one per sampling (a static argument)
    from arraygpt.backends import BackendUnavailable, get_backend
    with pytest.raises(BackendUnavailable, match="records nothing here") as refused:
        get_backend("torch-inductor", device="cpu")
    # named as asked, with the way to a usable variant, not an install line for a torch that is installed
    assert str(refused.value).startswith("backend 'torch-inductor'") and "pip install" not in str(refused.value)


# On a GPU (`pytest -m gpu`: these ids name gpu and cupy): each recorded backend against its eager variant.
GPU_PAIRS = [("torch", "gpu", "torch-eager"), ("torch-inductor", "gpu", "torch-eager"), ("cupy", None, "cupy-eager")]


@pytest.mark.parametrize("name, device, eager", GPU_PAIRS, ids=["torch-gpu", "torch-inductor-gpu", "cupy"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_recorded_gpu_step_makes_the_tokens_of_its_eager_variant(small_checkpoint, name, device, eager, dtype):
    recorded = load_model(small_checkpoint, backend=backend_or_skip(name, device), dtype=dtype)
    stepped = load_model(small_checkpoint, backend=backend_or_skip(eager, device), dtype=dtype)
    assert type(recorded.decoding).__name__ == "Recorded"
    prompts = [random_ids(n, 100, seed=70 + n) for n in (3, 8)]
    for kwargs in (dict(), dict(temperature=0.9, top_k=20, top_p=0.9, seed=5)):
        expected = stepped.generate(prompts, max_new_tokens=12, **kwargs)
        assert recorded.generate(prompts, max_new_tokens=12, **kwargs) == expected
        assert recorded.generate(prompts, max_new_tokens=12, **kwargs) == expected
    more = [random_ids(6, 100, seed=90)]  # another batch size: another recording, the same tokens
    assert recorded.generate(more, max_new_tokens=12) == stepped.generate(more, max_new_tokens=12)
