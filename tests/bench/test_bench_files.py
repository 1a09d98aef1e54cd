"""compare, report and plot read only sound bench files: NaN, infinite or negative figures, unknown
schemas, malformed records and incomplete runs get a verdict in one line, never a pass on garbage."""

from __future__ import annotations

import copy
import csv
import io
import json

import pytest

from helpers import TINY_BENCH, bench_rows, cli, one_line_error


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "run.json"
    result = cli(*TINY_BENCH, "--repeats", "3", "--json", path)
    assert result.returncode == 0, result.stderr
    return json.loads(path.read_text())


def write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def metric(doc):
    return doc["results"][0]["metrics"]["decode_tps"]


@pytest.mark.parametrize("damage, match", [
    (lambda d: metric(d).update(median=float("nan")), "not a positive speed"),
    (lambda d: metric(d).update(iqr=float("inf")), "is inf"),
    (lambda d: d["results"][0]["repeats"][0].update(decode_tps=-3.0), "is negative"),
    (lambda d: d.update(schema=99), "schema 99 is not one this arraygpt reads"),
    (lambda d: d.pop("environment"), "environment.machine is missing"),
    (lambda d: d.update(results={"a": 1}), "results is not a list"),
    (lambda d: d["results"][0].update(batch="8"), "batch is missing or not an integer"),
    (lambda d: d["results"][0].pop("metrics"), "has no metrics or repeats"),
    # the records' fields are the schema: each field's type as declared, a required one present
    (lambda d: d["results"][0].update(precision=3), "results[0].precision is not a string"),
    (lambda d: d["results"][0]["metrics"]["e2e_s"].pop("median"), "results[0].metrics.e2e_s.median is missing or not a number"),
    (lambda d: d["results"][0]["metrics"].update(compiled="yes"), "results[0].metrics.compiled is not true or false"),
    (lambda d: d["results"][0].pop("status"), "results[0].status is missing or not a string"),
])
def test_unsound_files_are_refused_by_compare_report_and_plot(run, tmp_path, damage, match):
    bad = copy.deepcopy(run)
    damage(bad)
    good, broken = write(tmp_path, "good.json", run), write(tmp_path, "bad.json", bad)
    for argv in (["compare", good, broken], ["compare", broken, good], ["report", broken],
                 ["plot", broken, "-o", tmp_path / "p.png"]):
        err = one_line_error(cli(*argv))
        assert match in err and "bad.json" in err, (argv, err)
    assert not (tmp_path / "p.png").exists()


def test_compare_gives_no_verdict_on_an_incomplete_run(run, tmp_path):
    partial = copy.deepcopy(run) | {"complete": False}
    base, new = write(tmp_path, "base.json", run), write(tmp_path, "new.json", partial)
    err = one_line_error(cli("compare", base, new))
    assert "new.json is an incomplete run" in err and "--allow-incomplete" in err
    assert cli("compare", base, new, "--allow-incomplete").returncode == 0
    result = cli("report", new)
    assert result.returncode == 0 and "incomplete run" in result.stderr


@pytest.mark.parametrize("value", ["1.5", "0", "-0.2", "abc"])
def test_compare_confidence_must_be_a_probability(run, tmp_path, value):
    path = write(tmp_path, "r.json", run)
    assert "--confidence" in one_line_error(cli("compare", path, path, "--confidence", value))


@pytest.mark.parametrize("suite, match", [
    ("[[group]]\nname='g'\nmodel='tiny'\ndtype='float32'\nbatch=1\nprompt_len=4\n", "has no new_tokens"),
    ("[[group]]\nname='g'\nmodel='tiny'\ndtype='float32'\nbatch='one'\nprompt_len=4\nnew_tokens=2\n",
     "batch must be an integer >= 1"),
    ("[[group]]\nname='g'\nmodel='tiny'\ndtype='float8'\nbatch=1\nprompt_len=4\nnew_tokens=2\n", "unknown dtype"),
    ("[[group]]\nname='g'\nmodel=3\ndtype='float32'\nbatch=1\nprompt_len=4\nnew_tokens=2\n", "model must be a string"),
    ("group = 3\n", "no [[group]]"),
    ("[[group]\n", "not a readable suite"),
])
def test_bad_suite_files_are_one_line(tmp_path, suite, match):
    path = tmp_path / "s.toml"
    path.write_text(suite)
    assert match in one_line_error(cli("bench", "--suite", path, "--list"))


@pytest.mark.parametrize("argv, match", [
    (["generate", "x", "--model", "tiny", "--seed", "-1"], "a seed is a whole number from 0"),
    (["generate", "x", "--model", ""], "no model given"),
    (["generate", "x", "--model", "tiny", "-n", "0"], "max-new-tokens must be >= 1"),
    (["init", "tiny", "somewhere", "--seed", "-1"], "a seed is a whole number from 0"),
    (["generate", "hi<|endoftext|>", "--model", "tiny"], "--allow-special"),
])
def test_more_bad_input_is_one_line(argv, match, tmp_path):
    assert match in one_line_error(cli(*argv, cwd=tmp_path))


def test_allow_special_encodes_the_special_token():
    result = cli("generate", "hi<|endoftext|>", "--model", "tiny", "-n", "2", "--allow-special", "--json")
    assert result.returncode == 0, result.stderr


def test_a_tiny_temperature_samples_the_greedy_tokens(small_checkpoint):
    """1e-40 used to overflow logits / T to infinity, so every step sampled token 0; the oracle is HF's
    greedy generate on the same checkpoint."""
    import numpy as np
    import torch
    from transformers import GPT2LMHeadModel
    from arraygpt.engine import load_model
    prompt = [3, 14, 15, 92, 65]
    hf = GPT2LMHeadModel.from_pretrained(small_checkpoint).eval()
    with torch.no_grad():
        greedy = hf.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                             pad_token_id=0)[0, len(prompt):].tolist()
    model = load_model(small_checkpoint)
    for temperature in (1e-40, 1e-300, np.float32(1e-30)):
        assert model.generate(prompt, max_new_tokens=8, temperature=temperature, seed=1) == greedy
    assert set(greedy) != {0}


def test_numpy_scalars_are_sampling_values(small_checkpoint):
    import numpy as np
    from arraygpt.engine import load_model
    model = load_model(small_checkpoint)
    prompt = [3, 14, 15]
    plain = model.generate(prompt, max_new_tokens=6, temperature=0.8, top_k=20, top_p=0.9, seed=np.int64(3))
    assert model.generate(prompt, max_new_tokens=6, temperature=np.float64(0.8), top_k=np.int64(20),
                          top_p=np.float64(0.9), seed=3) == plain


@pytest.mark.parametrize("argv, match", [
    (["--dtypes", "float8"], "unknown dtype 'float8'"),
    (["--backends", "numpy", "--precision", "tf32"], "backend numpy has no tf32 products"),
    (["--backends", "jax:cpu", "--precision", "tf32"], "no tf32 products on the cpu"),
    (["--batch-sizes", "0"], "batch must be an integer >= 1"),
    (["--backends", "numpy", "--weights", "q8_0", "--peer", "none"], "no scenario to run; q8_0 weights are llama.cpp"),
])
def test_bench_options_are_checked_before_any_worker_starts(argv, match, tmp_path):
    import time
    start = time.time()
    assert match in one_line_error(cli("bench", *argv, "--json", tmp_path / "never-written.json"))
    assert time.time() - start < 30 and not (tmp_path / "never-written.json").exists()


def test_progress_is_a_plain_line_per_scenario_when_stderr_is_not_a_terminal(tmp_path):
    result = cli(*TINY_BENCH, "--json", tmp_path / "r.json")  # stderr is a pipe here, as in CI
    assert result.returncode == 0
    assert "[1/1] tiny/numpy/float32/b1/p4/n4: ok (" in result.stderr


def test_no_compile_time_for_runners_that_do_not_compile(run):
    row = run["results"][0]
    assert row["runner"] == "numpy" and row["metrics"]["compiled"] is False


PERTURB_ONE_WEIGHT = '''
import arraygpt.backends.base as base
_from_host = base.ArrayBackend.from_host
def from_host(self, tensor, dtype, layout=None):
    x = _from_host(self, tensor, dtype, layout)
    if dtype == "float32" and tensor.name == "h.0.mlp.c_fc.weight":  # the float64 reference stays clean
        x = x.copy()
        x[0, 0] += 0.5
    return x
base.ArrayBackend.from_host = from_host
'''


def test_the_gate_fails_a_change_that_makes_the_numbers_worse_at_equal_speed(tmp_path):
    """A planted numerics regression: one float32 weight perturbed inside the backend (a sitecustomize in
    every process of the new run); the speed is the same, the parity with the float64 reference is not."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PERTURB_ONE_WEIGHT)
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    bench = [a for a in TINY_BENCH if a != "--no-parity"] + ["--repeats", "3"]
    assert cli(*bench, "--json", base).returncode == 0
    assert cli(*bench, "--json", new, env={"PYTHONPATH": str(hook)}).returncode == 0
    parity = [json.loads(p.read_text())["parity"]["numpy"]["tiny/float32"]["relative"] for p in (base, new)]
    assert parity[0] < 1e-5 < parity[1], parity
    verdicts = tmp_path / "v.json"
    result = cli("compare", base, new, "--threshold", "50%", "--json", verdicts)
    assert result.returncode == 1, result.stdout + result.stderr
    row = json.loads(verdicts.read_text())["comparisons"][0]
    assert row["numerics"] == "worse"
    if all(json.loads(p.read_text())["validity"]["status"] == "valid" for p in (base, new)):
        assert row["verdict"] == "no change"  # the speed did not change; on a busy machine it may seem to
    assert "1 worse than the budget" in result.stderr
    same = tmp_path / "same.json"
    same.write_bytes(base.read_bytes())
    assert cli("compare", base, same, "--threshold", "50%").returncode == 0


def test_the_gate_gives_no_verdict_from_too_few_repeats(tmp_path):
    one, other = tmp_path / "a.json", tmp_path / "b.json"
    for path in (one, other):
        assert cli(*TINY_BENCH, "--json", path).returncode == 0  # one repeat each
    verdicts = tmp_path / "v.json"
    result = cli("compare", one, other, "--json", verdicts)
    assert result.returncode == 0 and "without a verdict (fewer than 3 repeats a side)" in result.stderr
    row = json.loads(verdicts.read_text())["comparisons"][0]
    assert row["verdict"] == "too few repeats" and row["repeats"] == [1, 1] and row["detectable"] is None


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_csv_and_jsonl_rows_read_back_to_the_json(run, tmp_path, fmt):
    import csv
    import io
    path = write(tmp_path, "r.json", run)
    result = cli("report", path, "--format", fmt)
    assert result.returncode == 0, result.stderr
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        value = lambda row, key: float(row[key]) if row[key] else None  # noqa: E731
    else:
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        value = lambda row, key: row[key]  # noqa: E731
    assert [row["id"] for row in rows] == [r["id"] for r in run["results"]]
    for row, r in zip(rows, run["results"]):
        m = r["metrics"]
        assert value(row, "decode_tps") == m["decode_tps"]["median"]  # exactly: floats written with repr
        assert value(row, "latency_p99_s") == m["token_latency_s"]["p99"]
        assert value(row, "rss_peak_bytes") == m["rss_peak_bytes"]
        assert row["status"] == r["status"] and int(row["batch"]) == r["batch"]


def test_bench_prints_rows_in_the_format_asked(tmp_path):
    result = cli(*TINY_BENCH, "--json", tmp_path / "r.json", "--format", "md")
    assert result.returncode == 0
    header, rule, row = result.stdout.strip().splitlines()
    assert header.startswith("| run | id | runner") and "tiny/numpy/float32/b1/p4/n4" in row


def test_a_torch_row_whose_products_compile_reports_its_compile_time(tmp_path):
    """torch on the CPU compiles its one-row product at the first call for bfloat16 weights, and for float32 ones
    only where it does not hold them packed for oneDNN (backends/torch_products.py): a row is marked compiled, with
    the first call's extra time, exactly where something compiled (CI once read a float32 "compile time" of 0.0
    under load: nothing compiles there, the packed products are oneDNN's)."""
    torch = pytest.importorskip("torch")
    argv = [a if a != "numpy" else "torch" for a in TINY_BENCH[:-2]] + ["--warmup", "1", "--weights", "float32,bfloat16"]
    result = cli(*argv, "--json", tmp_path / "r.json", "--format", "csv")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {row["weights"] or row["dtype"]: row["metrics"] for row in bench_rows(tmp_path / "r.json")}
    packs = torch.backends.mkldnn.is_available()
    assert rows["float32"]["compiled"] is not packs
    assert rows["bfloat16"]["compiled"] is True
    assert rows["bfloat16"]["first_call_s"] > rows["bfloat16"]["e2e_s"]["median"]  # it compiled then
    # what a user reads: the compile time where something compiled, none where nothing did
    table = {row["numerics"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert float(table["float32+bfloat16-weights"]["compile_s"]) > 0
    assert (table["float32"]["compile_s"] == "") is packs
