"""Fuzzing what users and disks hand arraygpt (hypothesis): random bytes and structured mutations of a
safetensors header and of config.json, random bench documents for compare/report/plot, and random
command lines. The property everywhere: a correct result, or one line and exit 2 (CheckpointError in
Python); never a traceback, never a hang, never a changed file outside the output path."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from arraygpt.cli import main  # noqa: E402
from arraygpt.engine import ArrayGPTError, load_model  # noqa: E402
from arraygpt.engine.safetensors_io import read_safetensors  # noqa: E402

from helpers import safetensors_refuses, snapshot  # noqa: E402

# FUZZ_EXAMPLES=N runs N examples per test, randomized (a longer hunt); by default a fixed, quick set.
_HUNT = int(os.environ.get("FUZZ_EXAMPLES", 0))
FUZZ = settings(max_examples=_HUNT or 60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=not _HUNT)


def examples(n: int) -> int:
    return _HUNT or n
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
BENCH_FILE = RESULTS / "2026-11-24-cpu-ci-rerun-1.json"  # a real run, committed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def workdir(small_checkpoint):
    root = Path(tempfile.mkdtemp(prefix="arraygpt-fuzz-"))
    shutil.copytree(small_checkpoint, root / "ckpt")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def loads_or_refuses(directory) -> None:
    start = time.time()
    try:
        load_model(directory)
    except ArrayGPTError as err:
        assert len(str(err).splitlines()) == 1, err
    assert time.time() - start < 20


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes_as_a_safetensors_file(workdir, data):
    path = workdir / "random.safetensors"
    path.write_bytes(data)
    with pytest.raises(ArrayGPTError):
        read_safetensors(path)


@FUZZ
@given(data=st.data())
def test_mutated_safetensors_headers(workdir, data):
    original = (workdir / "ckpt" / "model.safetensors").read_bytes()
    n = int.from_bytes(original[:8], "little")
    header, body = json.loads(original[8:8 + n]), original[8 + n:]
    names = sorted(k for k in header if k != "__metadata__")
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(names))
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "__new__", "__whole__"]))
        value = data.draw(json_values)
        if field == "__whole__":
            header[name] = value
        elif isinstance(header.get(name), dict):
            header[name]["extra" if field == "__new__" else field] = value
    cut = data.draw(st.sampled_from([None, 0, 1, 7]))
    directory = workdir / "mutated"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(workdir / "ckpt", directory)
    encoded = json.dumps(header).encode()
    blob = len(encoded).to_bytes(8, "little") + encoded + body
    (directory / "model.safetensors").write_bytes(blob if cut is None else blob[:len(blob) - cut])
    ours_refused = False
    try:
        read_safetensors(directory / "model.safetensors")
    except ArrayGPTError as err:
        ours_refused = True
        assert len(str(err).splitlines()) == 1
    if safetensors_refuses(directory / "model.safetensors"):
        assert ours_refused  # never looser than the safetensors library
    loads_or_refuses(directory)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["n_layer", "n_head", "n_embd", "vocab_size", "n_positions", "n_ctx",
                                                "layer_norm_epsilon", "n_inner", "tie_word_embeddings",
                                                "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
                                                "activation_function", "model_type", "eos_token_id",
                                                "add_cross_attention", "arraygpt_synthetic", "hidden_size"]),
                              json_values | st.integers(0, 5000), max_size=4),
       drop=st.lists(st.sampled_from(["n_layer", "n_head", "n_embd", "vocab_size"]), max_size=2))
def test_mutated_config_json(workdir, fields, drop):
    loads_or_refuses(with_config_mutated(workdir, fields, drop))


def with_config_mutated(workdir, fields, drop):
    """A copy of workdir/ckpt whose config.json has fields set and drop removed."""
    directory = workdir / "config-mutated"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(workdir / "ckpt", directory)
    config = json.loads((directory / "config.json").read_text())
    config = {k: v for k, v in (config | fields).items() if k not in drop}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module")
def llama_workdir(tmp_path_factory):
    from arraygpt.engine.source import resolve_model
    root = tmp_path_factory.mktemp("llama-fuzz")
    shutil.copytree(resolve_model("tiny-llama").directory, root / "ckpt")
    return root


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                                                "hidden_size", "intermediate_size", "vocab_size",
                                                "max_position_embeddings", "rms_norm_eps", "rope_theta",
                                                "rope_scaling", "rope_parameters", "head_dim", "attention_bias",
                                                "tie_word_embeddings", "hidden_act", "model_type", "eos_token_id",
                                                "sliding_window", "layer_types", "mlp_bias", "partial_rotary_factor"]),
                              json_values | st.integers(0, 5000), max_size=4),
       drop=st.lists(st.sampled_from(["num_hidden_layers", "num_attention_heads", "hidden_size", "vocab_size",
                                      "intermediate_size"]), max_size=2))
def test_mutated_llama_config_json(llama_workdir, fields, drop):
    """The Llama family's config.json (tiny-llama's), mutated field by field: it loads, or one line names why."""
    loads_or_refuses(with_config_mutated(llama_workdir, fields, drop))


def mutate(doc, data):
    """Replace a random place of a JSON document with a random value (or delete it)."""
    node, path = doc, []
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
    if not path:
        return data.draw(json_values) if data.draw(st.booleans()) else doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values | st.floats(allow_nan=True) | st.integers(-5, 5))
    return doc


def one_line_or_ok(code, capsys) -> None:
    err = capsys.readouterr().err
    assert code in (0, 1, 2), code
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err


@FUZZ
@given(data=st.data())
def test_random_bench_documents(workdir, capsys, data):
    base = json.loads(BENCH_FILE.read_text())
    doc = json.loads(BENCH_FILE.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        doc = mutate(doc, data)
    good, bad = workdir / "good.json", workdir / "bad.json"
    good.write_text(json.dumps(base))
    bad.write_text(json.dumps(doc, allow_nan=True))
    before = snapshot(workdir / "ckpt")
    for argv in (["compare", str(good), str(bad)], ["report", str(bad)]):
        one_line_or_ok(main(argv), capsys)
    assert json.loads(good.read_text()) == base and snapshot(workdir / "ckpt") == before


@settings(FUZZ, max_examples=examples(15))
@given(data=st.data())
def test_random_bench_documents_plot(workdir, capsys, data):
    doc = json.loads(BENCH_FILE.read_text())
    for _ in range(data.draw(st.integers(1, 2))):
        doc = mutate(doc, data)
    bad = workdir / "plot-input.json"
    bad.write_text(json.dumps(doc, allow_nan=True))
    one_line_or_ok(main(["plot", str(bad), "-o", str(workdir / "out.png")]), capsys)


WORDS = {
    "command": ["tokenize", "init", "compare", "report", "plot", "generate", "bench", "info", "parity", "nope", ""],
    "option": ["--model", "-n", "--temperature", "--top-k", "--top-p", "--seed", "--backend", "--dtype", "--weights",
               "--json", "-o", "--force", "--threshold", "--confidence", "--suite", "--backends", "--dtypes",
               "--batch-sizes", "--decode", "--allow-special", "--mesh", "--precision", "--model-seed", "--help"],
    "value": ["tiny", "", "-1", "0", "1", "3", "1e-40", "nan", "inf", "2000", "abc", "numpy", "strict", "nope",
              "float32", "float16", "bfloat16", "float8", "tp=2", "dp=0", "10%", "1.5", "[1, 2]", "[]", "-",
              "hi<|endoftext|>", "caf\udce9", "OUT/a.json", "OUT/a.png", "OUT", "USER/notes.txt", ".", "..",
              "RESULT", "quick", "tf32", "/dev/null"],
}


@settings(FUZZ, max_examples=examples(80))
@given(data=st.data())
def test_random_command_lines(workdir, capsys, monkeypatch, data):
    user = workdir / "user"
    out = workdir / "out"
    for d in (user, out):
        d.mkdir(exist_ok=True)
    (user / "notes.txt").write_text("notes\n")
    (user / "thesis.tex").write_text("\\chapter{}\n")
    monkeypatch.chdir(user)
    argv = [data.draw(st.sampled_from(WORDS["command"]))]
    for _ in range(data.draw(st.integers(0, 6))):
        kind = data.draw(st.sampled_from(["option", "value", "value"]))
        argv.append(data.draw(st.sampled_from(WORDS[kind])))
    argv = [a.replace("OUT", str(out)).replace("USER", str(user)).replace("RESULT", str(BENCH_FILE)) for a in argv]
    if argv[0] == "bench":
        argv.append("--list")  # no measurement inside a fuzz run
    if argv[0] in ("generate", "parity"):
        argv += (["--model", "tiny", "-n", "2"] if argv[0] == "generate"
                 else ["--model", "tiny", "--new-tokens", "2", "--backends", "numpy"])
        argv = [a for a in argv if a not in ("2000", "--mesh")]
    before = snapshot(user)
    results_before = BENCH_FILE.read_bytes()
    start = time.time()
    one_line_or_ok(main(argv), capsys)
    assert time.time() - start < 60, argv
    after = snapshot(user)
    assert {name: after.get(name) for name in before} == before, argv  # nothing of the user's changed
    new = set(after) - set(before)  # and the only new files are a command's default outputs
    assert all(name == "bench.png" or name.startswith("out/bench-") for name in new), (argv, new)
    assert BENCH_FILE.read_bytes() == results_before


@FUZZ
@given(st.one_of(json_values.map(json.dumps), st.integers(1, 200_000).map(lambda n: "[" * n + "]" * n),
                 st.text(max_size=40)))
def test_decode_takes_any_text_as_ids_or_says_why_in_one_line(text):
    """tokenize --decode: a JSON list of ids decodes; anything else (any JSON, nesting past the parser's depth,
    not JSON) is exit 2 with a message, never an exception."""
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["tokenize", "--decode", text])
    assert code in (0, 2) and "Traceback" not in err.getvalue()


@FUZZ
@given(content=st.binary(max_size=64), as_link=st.booleans(), name=st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=20))
def test_the_lock_takes_over_only_its_own_leftovers_and_never_changes_anything_else(content, as_link, name):
    """Whatever is at `.NAME.lock` (any bytes, or a link to a user's file), exclusive_output either refuses in one
    ArrayGPTError leaving it exactly as it was, or it was a lock a killed bench left (a pid) and is gone after."""
    from arraygpt.benchmarks.outputs import exclusive_output
    if name in (".", "..") or len(name.encode()) > 200:
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        output, lock, victim = tmp / name, tmp / f".{name}.lock", tmp / "victim"
        victim.write_bytes(b"precious")
        if as_link:
            lock.symlink_to(victim)
        else:
            lock.write_bytes(content)
            os.utime(lock, (time.time() - 10, time.time() - 10))  # not a lock being made this instant
        before = snapshot(tmp)
        leftover = not as_link and content.strip().isdigit() and len(content) <= 32
        try:
            with exclusive_output(output):
                assert leftover, "took over a file that was not a lock of ours"
        except ArrayGPTError:
            assert not leftover  # (the CLI prints any message as one line, whatever the name holds)
            assert snapshot(tmp) == before and (lock.is_symlink() or lock.exists())
        else:
            assert not os.path.lexists(lock) and victim.read_bytes() == b"precious"


@pytest.mark.parametrize("kind", ["fifo", "directory", "link-to-fifo", "device"])
def test_reading_a_users_file_never_waits_on_what_is_not_a_regular_file(tmp_path, kind):
    from arraygpt.engine.files import read_text
    path = tmp_path / "config.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "link-to-fifo":
        os.mkfifo(tmp_path / "pipe")
        path.symlink_to(tmp_path / "pipe")
    else:
        path = Path("/dev/zero")  # an endless device: reading it whole would never end
    start = time.time()
    with pytest.raises(OSError):
        read_text(path)
    assert time.time() - start < 5


@pytest.fixture(scope="module")
def sharded_workdir(tmp_path_factory):
    """tiny-llama re-saved by HF as shards with model.safetensors.index.json."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from arraygpt.engine.source import resolve_model
    root = tmp_path_factory.mktemp("sharded-fuzz")
    source = resolve_model("tiny-llama").directory
    model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    model.save_pretrained(root / "ckpt", max_shard_size="1MB")
    shutil.copy(source / "tokenizer.json", root / "ckpt")
    assert (root / "ckpt" / "model.safetensors.index.json").exists()
    return root


@settings(FUZZ, max_examples=examples(30))
@given(data=st.data())
def test_mutated_shard_index(sharded_workdir, data):
    """A sharded checkpoint's index mutated anywhere (files, names, types, nesting): it loads, or one line."""
    directory = sharded_workdir / "index-mutated"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(sharded_workdir / "ckpt", directory)
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        index = mutate(index, data)
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, allow_nan=True))
    before = snapshot(sharded_workdir / "ckpt")
    loads_or_refuses(directory)
    assert snapshot(sharded_workdir / "ckpt") == before
