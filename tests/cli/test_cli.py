"""The command line: what users type, checked for output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from arraygpt.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tokenize_prints_json_ids(capsys):
    code, out, _ = run_cli(capsys, "tokenize", "Alan Turing theorized that computers would one day become")
    assert code == 0
    assert json.loads(out) == [36235, 39141, 18765, 1143, 326, 9061, 561, 530, 1110, 1716]
    code, out, _ = run_cli(capsys, "tokenize", "--decode", "[36235, 39141]")
    assert code == 0 and out == "Alan Turing\n"


def test_generate_streams_and_says_weights_are_random(capsys):
    code, out, err = run_cli(capsys, "generate", "Hello there", "--model", "tiny", "-n", "8")
    assert code == 0
    assert out.startswith("Hello there") and len(out) > len("Hello there\n")
    assert "random weights" in err and "tokens/s" in err


def test_generate_json_batch(capsys):
    from arraygpt.engine import Tokenizer, load_model
    code, out, _ = run_cli(capsys, "generate", "a b c", "one two", "--model", "tiny", "-n", "5", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["prompt"] for r in rows] == ["a b c", "one two"]
    tok, model = Tokenizer.gpt2(), load_model("tiny")
    assert rows[0]["ids"] == model.generate(tok.encode("a b c"), max_new_tokens=5)
    assert rows[0]["random_weights"] is True


@pytest.mark.parametrize("argv, message", [
    (["generate", ""], "empty prompt"),
    (["generate", "x", "--model", "125M"], "unknown preset '125M'"),
    (["generate", "x", "--model", "./no/such/dir"], "no such directory"),
    (["generate", "x", "--temperature", "-1"], "temperature must be"),
    (["generate", "x", "--top-p", "2"], "top_p must be"),
    (["generate", "x", "--top-k", "0"], "top_k must be"),
    (["generate", "x", "--model", "tiny", "-n", "2000"], "2000 new tokens need 2000 positions or more"),
    (["generate", "x", "--model", "tiny", "-n", "1000000000"], "more than the model's context of 1024; ask for at most 1024"),
    (["generate", "x", "--top-k", "abc"], "invalid int value"),
    (["generate", "x", "--backend", "nope"], "unknown backend 'nope'"),
    (["generate", "x", "--dtype", "bfloat16"], "numpy' has no bfloat16"),
    (["tokenize", "hi<|endoftext|>"], "special token"),
    (["init", "999M", "out"], "unknown preset"),
])
def test_bad_input_is_one_line_on_stderr(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_unusable_backend_names_the_usable_ones(capsys):
    code, _, err = run_cli(capsys, "generate", "x", "--backend", "jax", "--device", "tpu")
    assert code == 2 and "usable here: numpy" in err and len(err.strip().splitlines()) == 1


def test_init_writes_a_checkpoint_and_refuses_to_overwrite(capsys, tmp_path):
    code, _, err = run_cli(capsys, "init", "tiny", str(tmp_path / "t"), "--seed", "5")
    assert code == 0 and "random weights" in err
    assert json.loads((tmp_path / "t" / "config.json").read_text())["arraygpt_synthetic"] == {"preset": "tiny", "seed": 5}
    code, _, err = run_cli(capsys, "init", "tiny", str(tmp_path / "t"))
    assert code == 2 and "not empty" in err


def test_info_lists_backends(capsys, monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # a cap a bench run would record: info shows it first
    code, out, _ = run_cli(capsys, "info", "--json")
    info = json.loads(out)
    assert code == 0 and info["kernel_settings"]["ATEN_CPU_CAPABILITY"] == "avx2"
    assert {b["backend"] for b in info["backends"]} == {"numpy", "jax", "jax-loop", "torch", "torch-eager", "torch-inductor",
                                                        "cupy", "cupy-eager", "strict"}
    assert info["versions"]["numpy"]


def test_console_script_has_help_and_no_traceback():
    out = subprocess.run([sys.executable, "-m", "arraygpt", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "generate" in out.stdout and "tokenize" in out.stdout
    out = subprocess.run([sys.executable, "-m", "arraygpt", "generate", "x", "--model", "/nonexistent"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "no such directory" in out.stderr


def test_bench_help_names_every_peer():
    from arraygpt.benchmarks.runners import PEERS
    out = subprocess.run([sys.executable, "-m", "arraygpt", "bench", "--help"], capture_output=True, text=True)
    text = " ".join(out.stdout.split())  # argparse wraps the lines
    assert out.returncode == 0
    for name, peer in PEERS.items():
        assert f"{name}: {' '.join(peer.what.split())}" in text, name  # its description, not the record's repr
    assert "Peer(" not in text and "q8_0" in text
