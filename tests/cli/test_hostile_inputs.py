"""What a hostile user found (issue 29): each case is a right result or one line and exit 2, never a traceback
or a hang. Damaged tokenizer files, a closed standard input, deeply nested JSON, options that would be
ignored or taken as something else, and a terminal that cannot show every character."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from helpers import cli, one_line_error


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny") / "m"
    assert cli("init", "tiny", directory).returncode == 0
    return directory


@pytest.fixture
def damaged(checkpoint, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(checkpoint, copy)
    return copy


@pytest.mark.parametrize("vocab, merges, said", [
    ([1, 2], None, "not a JSON object"),
    ({"a": "b"}, None, "ids are integers >= 0"),
    ({"a": 0}, None, "single bytes have no token"),
    (None, "#version: 0.2\nab\n", "line 2: 'ab' is not two tokens"),
    (None, "#version: 0.2\nQ Z\n", "merges into 'QZ', which vocab.json does not have"),
])
def test_damaged_tokenizer_files_are_one_line(damaged, vocab, merges, said):
    if vocab is not None:
        (damaged / "vocab.json").write_text(json.dumps(vocab))
    if merges is not None:
        (damaged / "merges.txt").write_text(merges)
    assert said in one_line_error(cli("tokenize", "hello", "--model", damaged))
    assert said in one_line_error(cli("generate", "hello", "--model", damaged, "-n", "2"))


def test_standard_input_closed_and_nested_json():
    closed = subprocess.run([sys.executable, "-m", "arraygpt", "tokenize", "-"], stdin=None, capture_output=True,
                            text=True, timeout=60, preexec_fn=lambda: __import__("os").close(0))
    assert "standard input is closed" in one_line_error(closed)
    nested = subprocess.run([sys.executable, "-m", "arraygpt", "tokenize", "--decode", "-"], input="[" * 100_000,
                            capture_output=True, text=True, timeout=60)
    assert "JSON list of token ids" in one_line_error(nested)
    assert "JSON list of token ids" in one_line_error(cli("tokenize", "--decode", "[true]"))


def test_options_that_would_be_ignored_are_refused():
    assert "whole number from 0" in one_line_error(cli("parity", "--model", "tiny", "--seed", "-1"))
    assert "whole number from 0" in one_line_error(cli("generate", "x", "--model", "tiny", "--seed", "-3"))
    assert "HOST:PORT" in one_line_error(cli("generate", "x", "--model", "tiny", "--backend", "jax", "--coordinator",
                                             "localhost", "--num-processes", "1", "--process-id", "0"))
    assert "numpy runs in one process" in one_line_error(
        cli("generate", "x", "--model", "tiny", "--backend", "numpy", "--coordinator", "localhost:1234",
            "--num-processes", "1", "--process-id", "0"))
    assert "go with --coordinator" in one_line_error(cli("generate", "x", "--model", "tiny", "--num-processes", "2"))


@pytest.mark.parametrize("argv", [("generate", "h\u00e9llo", "--model", "tiny", "-n", "3"),
                                  ("tokenize", "--decode", "[40, 1101, 287, 564]"), ("info",)])
def test_a_terminal_that_cannot_show_every_character(argv):
    result = cli(*argv, env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_a_bench_that_cannot_work_is_refused_before_any_worker(tmp_path):
    base = ["bench", "--models", "tiny", "--backends", "numpy", "--peer", "none", "--json", tmp_path / "r.json"]
    assert "more than tiny's context of 1024" in one_line_error(cli(*base, "--prompt-lens", "2000", timeout=60))
    assert "numpy has no bfloat16" in one_line_error(cli(*base, "--dtypes", "bfloat16", timeout=60))
    assert not (tmp_path / "r.json").exists()


def test_a_gpu_suite_on_a_machine_without_a_gpu(tmp_path):
    from pathlib import Path
    if any(Path("/proc/driver/nvidia/gpus").glob("*")):
        pytest.skip("this machine has an NVIDIA GPU")
    err = one_line_error(cli("bench", "--suite", "gpu", "--json", tmp_path / "r.json", timeout=60))
    assert "for a GPU machine" in err and "--force" in err


def test_info_lists_the_peers_and_whether_each_is_installed():
    result = cli("info", "--json")
    peers = {p["peer"]: p for p in json.loads(result.stdout)["peers"]}
    assert set(peers) == {"hf", "hf-static", "picogpt", "llamacpp", "ort"} and peers["picogpt"]["installed"] is True
    import importlib.util
    assert peers["llamacpp"]["installed"] == (importlib.util.find_spec("llama_cpp") is not None)
    narrow = cli("info", env={"COLUMNS": "60"})
    assert narrow.returncode == 0 and "peers" in narrow.stdout


def test_a_file_size_limit_names_the_file(tmp_path):
    """Past `ulimit -f` a write fails with EFBIG (Python ignores SIGXFSZ): the one line names the file."""
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    def run(*argv):
        return subprocess.run([sys.executable, "-m", "arraygpt", *map(str, argv)], capture_output=True, text=True,
                              timeout=120, preexec_fn=small_files)

    target = tmp_path / "ckpt"
    err = one_line_error(run("init", "tiny", target))
    assert f"{target}: File too large" in err and "ulimit -f" in err


@pytest.mark.parametrize("limit_mb, starts", [(600, False), (1200, True)])
def test_jax_under_an_address_space_limit_starts_or_says_why(checkpoint, limit_mb, starts):
    """Under `ulimit -v` XLA's thread pools used to abort the process from C++ (std::bad_alloc, exit 134,
    no message) at 1.0 and 1.5 GB on a 2-core machine: now JAX starts (malloc arenas capped), or where it
    cannot, one line says so before JAX runs here."""
    pytest.importorskip("jax")
    import resource

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb * 2**20, resource.RLIM_INFINITY))

    out = subprocess.run([sys.executable, "-m", "arraygpt", "generate", "--model", checkpoint, "--backend", "jax",
                          "-n", "2", "hi"], capture_output=True, text=True, timeout=300, preexec_fn=limited)
    if starts:
        assert out.returncode == 0, out.stderr[-500:]
        assert "2 tokens in" in out.stderr
    else:
        err = one_line_error(out)
        assert "address-space limit (ulimit -v" in err and "--backend numpy" in err
