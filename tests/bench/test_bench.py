"""The harness, the regression gate and the plot, run for real on the tiny model."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from arraygpt.cli import main
from arraygpt.backends import get_backend, usable_backends
from arraygpt.benchmarks.records import Scenario
from arraygpt.benchmarks.scenarios import available_suites, expand, load_suite
from arraygpt.engine.errors import ArrayGPTError
from helpers import interruptible

TINY = ["--models", "tiny", "--batch-sizes", "1", "--prompt-lens", "8", "--new-tokens", "16", "--warmup", "1"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One real run: numpy, jax and jax-loop, with the HF and picoGPT peers, roofline probes and parity."""
    path = tmp_path_factory.mktemp("bench") / "run.json"
    code = main(["bench", *TINY, "--repeats", "5", "--backends", "numpy,jax,jax-loop", "--peer", "hf,picogpt",
                 "--json", str(path)])
    return code, json.loads(path.read_text()), path


def test_bench_records_every_runner_with_metrics(bench_run):
    code, doc, _ = bench_run
    assert code == 0 and doc["complete"] is True
    assert {r["runner"] for r in doc["results"]} == {"numpy", "jax", "jax-loop", "hf", "picogpt"}
    env = doc["environment"]
    assert env["machine"]["cores"] and env["versions"]["numpy"] and env["date"] and "commit" in env
    if os.path.exists("/proc/cpuinfo"):  # the features that pick our kernels, as the kernel lists them
        with open("/proc/cpuinfo") as info:
            line = next((line for line in info if line.startswith("flags")), "flags:")  # ARM says "Features"
        flags = line.split(":", 1)[1].split()
        assert ("avx2" in env["machine"]["cpu_features"]) == ("avx2" in flags)
        assert set(env["machine"]["cpu_features"]) <= set(flags)
        with open("/proc/cpuinfo") as info:  # the CPU's generation, which a hypervisor's model name can hide
            family = next((line.split(":")[1].strip() for line in info if line.startswith("cpu family")), None)
        assert (env["machine"]["cpu_id"] or "").startswith(f"family {family} model ") or family is None
    # each of our rows says how its weight products were computed, as its adapter declares; a peer's says nothing
    for r in doc["results"]:
        declared = get_backend(r["runner"]).products_for(r["dtype"], r["weights"] or r["dtype"]) \
            if r["runner"] in ("numpy", "jax", "jax-loop") else None
        assert r["metrics"].get("products") == declared and (declared is None or "numpy" in declared
                                                               or "jax" in declared), r["runner"]
    for r in doc["results"]:
        assert r["status"] == "ok", r
        m = r["metrics"]
        assert len(r["repeats"]) == 5 and all(len(rep["step_s"]) == 15 for rep in r["repeats"])  # exactly 16 tokens
        assert m["decode_tps"]["min"] <= m["decode_tps"]["median"] <= m["decode_tps"]["max"]
        assert m["token_latency_s"]["p50"] <= m["token_latency_s"]["p99"]
        assert m["rss_peak_bytes"] > 0 and m["ttft_s"]["median"] > 0
        assert 0 < r["derived"]["decode_roofline"] and r["derived"]["parity_relative"] < 1e-4
    ours = next(r for r in doc["results"] if r["runner"] == "numpy")
    assert ours["derived"]["decode_tps_vs_hf"] > 0 and "compile_s" in ours["metrics"]
    assert set(doc["probes"]) == {"numpy", "jax", "jax-loop", "hf", "picogpt"}
    looped = next(r for r in doc["results"] if r["runner"] == "jax-loop")
    for rep in looped["repeats"]:  # tokens after the first arrive together: each step gets the mean
        assert max(rep["step_s"]) - min(rep["step_s"]) < 1e-6
        assert sum(rep["step_s"]) == pytest.approx(15 / rep["decode_tps"], rel=1e-3)


STEADY = ["--models", "tiny", "--batch-sizes", "1", "--prompt-lens", "8", "--new-tokens", "48", "--repeats", "7",
          "--backends", "numpy", "--peer", "none", "--no-roofline", "--no-parity"]


@pytest.fixture(scope="module")
def steady_runs(tmp_path_factory):
    """Two runs of one scenario long enough (48 tokens x 7 repeats) that a 1 ms hiccup stays noise."""
    paths = [tmp_path_factory.mktemp("steady") / f"run-{i}.json" for i in range(2)]
    for path in paths:
        assert main(["bench", *STEADY, "--json", str(path)]) == 0
    return paths


def slowed_copy(path, factor, target_dir):
    doc = json.loads(path.read_text())
    for r in doc["results"]:
        for rep in r["repeats"]:
            rep["decode_tps"] *= factor
    out = target_dir / f"slow-{path.name}"
    out.write_text(json.dumps(doc))
    return out, doc["results"][0]["id"]


def test_compare_flags_a_slowdown_made_on_purpose(steady_runs, tmp_path):
    base = steady_runs[0]
    slow, scenario = slowed_copy(base, 0.6, tmp_path)  # the scenario slowed by 40%
    out_json = tmp_path / "verdicts.json"
    code = main(["compare", str(base), str(slow), "--threshold", "10%", "--json", str(out_json)])
    [verdict] = json.loads(out_json.read_text())["comparisons"]
    assert verdict["id"] == scenario
    if json.loads(base.read_text())["validity"]["status"] == "valid":
        assert code == 1 and verdict["verdict"] == "slower"
    else:  # a busy machine (another test run, CI's neighbours): what must hold is that compare says it could not
        # tell, never "no change" while claiming it would have seen a 40% slowdown
        assert (code, verdict["verdict"]) == (1, "slower") or (
            code == 0 and verdict["verdict"] == "no change" and verdict["detectable"] > 0.3), verdict
    assert main(["compare", str(slow), str(base), "--threshold", "10%"]) == 0  # faster is not a failure


def test_compare_only_flags_the_slowed_scenario(bench_run, tmp_path):
    _, doc, path = bench_run
    slowed = copy.deepcopy(doc)
    target = next(r for r in slowed["results"] if r["runner"] == "numpy")
    # every repeat a fifth of the slowest base repeat: slower whatever the base's spread (on a busy machine one
    # descheduled repeat of the ~1 ms steps can spread the base 5x, and a copy scaled repeat by repeat then
    # overlapped it in the bootstrap: compare rightly called that no change, and this test failed)
    slowest = min(rep["decode_tps"] for rep in target["repeats"])
    for rep in target["repeats"]:
        rep["decode_tps"] = 0.2 * slowest
    slow_path = tmp_path / "slow.json"
    slow_path.write_text(json.dumps(slowed))
    out_json = tmp_path / "verdicts.json"
    assert main(["compare", str(path), str(slow_path), "--threshold", "10%", "--json", str(out_json)]) == 1
    verdicts = {c["id"]: c["verdict"] for c in json.loads(out_json.read_text())["comparisons"]}
    assert verdicts.pop(target["id"]) == "slower" and set(verdicts.values()) == {"no change"}


@pytest.fixture(scope="module")
def rerun(bench_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("rerun") / "again.json"
    assert main(["bench", *TINY, "--repeats", "5", "--backends", "numpy,jax,jax-loop", "--peer", "hf,picogpt",
                 "--no-roofline", "--no-parity", "--json", str(path)]) == 0
    return path


def test_compare_stays_quiet_on_a_rerun(bench_run, rerun, steady_runs, capsys):
    _, _, path = bench_run
    # The tiny model's steps last ~1 ms, where scheduling noise is largest: a wide threshold here;
    # the README reports the measured false-alarm rate of the default on 124M. On the shared 2-core
    # machine a whole half-second run once ran at half speed (737 vs 394 tok/s, every repeat): no
    # interval from within one run can call that noise, so the steady pair is held to 40%.
    # Quiet is asserted where both runs were valid; where the machine disturbed one (CI's neighbours, the
    # other xdist worker), what must hold is that compare says its verdicts may be the machine's.
    for pair, threshold in (((path, rerun), "30%"), (tuple(steady_runs), "40%")):
        code = main(["compare", str(pair[0]), str(pair[1]), "--threshold", threshold])
        said = capsys.readouterr().err
        if all(json.loads(p.read_text())["validity"]["status"] == "valid" for p in pair):
            assert code == 0, said
        else:
            assert code == 0 or "compared from unsteady or invalid runs" in said, said


def test_pooled_runs_still_catch_a_slowdown(steady_runs, tmp_path):
    """Two runs per side (repeats pooled) still flag a 40% slowdown present in both new runs."""
    slowed = [slowed_copy(path, 0.6, tmp_path)[0] for path in steady_runs]
    both = ",".join(map(str, steady_runs))
    out_json = tmp_path / "verdicts.json"
    code = main(["compare", both, ",".join(map(str, slowed)), "--threshold", "10%", "--json", str(out_json)])
    [verdict] = json.loads(out_json.read_text())["comparisons"]
    if all(json.loads(path.read_text())["validity"]["status"] == "valid" for path in steady_runs):
        assert code == 1 and verdict["verdict"] == "slower"
    else:  # a busy machine: compare calls the slowdown, or says it could not have seen one this size
        assert (code, verdict["verdict"]) == (1, "slower") or (
            code == 0 and verdict["verdict"] == "no change" and verdict["detectable"] > 0.3), verdict
    copies = []
    for path in steady_runs:  # the same runs again, as other files (one file on both sides is refused)
        copies.append(tmp_path / f"copy-{path.name}")
        copies[-1].write_bytes(path.read_bytes())
    assert main(["compare", both, ",".join(map(str, copies)), "--threshold", "10%"]) == 0


def test_compare_refuses_other_machines_and_lists_one_sided_scenarios(bench_run, tmp_path, capsys):
    _, doc, path = bench_run
    other = copy.deepcopy(doc)
    other["environment"]["machine"]["cpu"] = "Some Other CPU"
    other["results"] = [r for r in other["results"] if r["runner"] != "picogpt"]
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["compare", str(path), str(other_path)]) == 2
    assert "different machines" in capsys.readouterr().err
    other["environment"]["machine"]["cpu"] = doc["environment"]["machine"]["cpu"]
    other["environment"]["machine"]["cpu_id"] = "family 999 model 1"  # the same name, another generation
    other_path.write_text(json.dumps(other))
    assert main(["compare", str(path), str(other_path)]) == 2
    assert "different machines" in capsys.readouterr().err
    del other["environment"]["machine"]["cpu_id"]  # a file written before the field: compared by name as before
    other["environment"]["kernel_settings"] = {"ATEN_CPU_CAPABILITY": "avx2"}  # the same CPU told to stop at AVX2
    other_path.write_text(json.dumps(other))
    assert main(["compare", str(path), str(other_path)]) == 2
    err = capsys.readouterr().err
    assert "different kernel settings" in err and "ATEN_CPU_CAPABILITY=avx2" in err and len(err.strip().splitlines()) == 1
    other["environment"]["kernel_settings"] = doc["environment"]["kernel_settings"]
    other_path.write_text(json.dumps(other))
    assert main(["compare", str(path), str(other_path)]) == 2  # picogpt missing: different runners
    assert main(["compare", str(path), str(other_path), "--force"]) == 0
    assert "only in BASE" in capsys.readouterr().out


def test_plot_writes_a_png(bench_run, tmp_path):
    _, _, path = bench_run
    png = tmp_path / "plot.png"
    assert main(["plot", str(path), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_interrupted_run_keeps_what_finished(tmp_path):
    path = tmp_path / "partial.json"
    process = subprocess.Popen([sys.executable, "-m", "arraygpt", "bench", *TINY, "--repeats", "2", "--backends",
                                "numpy", "--peer", "picogpt", "--new-tokens", "300", "--no-roofline", "--no-parity",
                                "--json", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=os.environ | {"COLUMNS": "120"}, preexec_fn=interruptible)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the numpy scenario has finished, then press Ctrl-C
        if path.exists() and json.loads(path.read_text())["results"]:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    doc = json.loads(path.read_text())
    assert doc["complete"] is False
    assert [r["runner"] for r in doc["results"]] == ["numpy"] and doc["results"][0]["status"] == "ok"
    assert b"Traceback" not in err


def test_q8_0_is_a_weights_format_for_the_llamacpp_peer_only():
    suite = load_suite("ci")
    rows = expand(suite, [("numpy", None), ("jax", None)], {"weights": ["q8_0"]}, peers=["llamacpp", "hf"])
    assert rows and {s.runner for s in rows} == {"llamacpp"}  # not ours, not HF's
    with pytest.raises(ArrayGPTError, match="unknown dtype 'q8_0'"):
        expand(suite, [("numpy", None)], {"dtype": ["q8_0"]})  # a storage format, not an arithmetic


def test_shipped_suites_expand():
    for name in available_suites():
        scenarios = expand(load_suite(name), [("numpy", None)])
        assert scenarios and len({s.id for s in scenarios}) == len(scenarios)
    quick = expand(load_suite("every-peer"), [("numpy", None), ("jax", None)])
    assert {s.runner for s in quick} == {"numpy", "jax", "hf", "hf-static", "picogpt", "llamacpp", "ort"}
    assert {s.batch for s in quick if s.runner == "llamacpp"} == {1, 8}  # b8: parallel sequences
    assert all(s.batch == 1 for s in quick if s.runner == "picogpt")
    # llama.cpp's Q8_0 is a row of its own: no backend of ours is given it
    assert {(s.runner, s.numerics) for s in quick if s.weights == "q8_0"} == {("llamacpp", "float32+q8_0-weights")}
    overridden = expand(load_suite("quick"), [("numpy", None)], {"batch": [2, 4], "model": ["tiny"]}, peers=[])
    assert {s.model for s in overridden} == {"tiny"}
    # --batch-sizes reshapes the decode groups; the prefill groups keep their batch unless asked
    assert {s.batch for s in overridden if s.new_tokens > 1} == {2, 4}
    assert {s.batch for s in overridden if s.new_tokens == 1} == {1}
    asked = expand(load_suite("quick"), [("numpy", None)], {"batch": [2], "prefill_batch": [3]}, peers=[])
    assert {s.batch for s in asked if s.new_tokens == 1} == {3}


def test_bad_suite_and_list(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[group]]\nname='x'\nbatchh=[1]\n")
    assert main(["bench", "--suite", str(bad)]) == 2
    assert "unknown field" in capsys.readouterr().err
    assert main(["bench", "--suite", "nope"]) == 2
    assert main(["bench", "--list", "--backends", "numpy"]) == 0
    assert "124M/numpy/float32/b1/p16/n64" in capsys.readouterr().out


MIXED_SUITE = """
description = "two libraries on one machine: numpy float32 and jax-loop bfloat16"
[defaults]
model = "124M"
batch = [1]
prompt_len = [8]
new_tokens = [12]
warmup = 1
repeats = 1
peers = []
[[group]]
name = "numpy-float32"
backends = ["numpy"]
dtype = "float32"
[[group]]
name = "jax-bfloat16"
backends = ["jax-loop"]
dtype = "bfloat16"
"""


def test_roofline_is_the_machines_and_never_above_100_percent(tmp_path):
    """jax-loop bfloat16 once showed 510% of its floor: XLA's own bfloat16 matrix x vector probe reads
    ~2 GB/s on a CPU. The floor is now set by the best bandwidth any library measured on the device."""
    suite = tmp_path / "mixed.toml"
    suite.write_text(MIXED_SUITE)
    path = tmp_path / "mixed.json"
    assert main(["bench", "--suite", str(suite), "--backends", "numpy,jax-loop:cpu", "--no-parity", "--json",
                 str(path)]) == 0  # both on the CPU, also where JAX's default device is a GPU
    doc = json.loads(path.read_text())
    assert [(r["runner"], r["dtype"], r["status"]) for r in doc["results"]] == [
        ("jax-loop", "bfloat16", "ok"), ("numpy", "float32", "ok")]
    probes = {(label, key): p for label, by_key in doc["probes"].items() for key, p in by_key.items()}
    bandwidth = doc["ceilings"]["cpu"]["bandwidth"]
    assert bandwidth["value"] == max(p["bandwidth_bytes_s"] for p in probes.values())
    assert bandwidth["set_by"] in {f"{label} {p['dtype']}" for (label, _), p in probes.items()}
    assert set(doc["ceilings"]["cpu"]["matmul"]) == {"float32", "bfloat16"}  # a rate per product arithmetic
    for r in doc["results"]:
        assert 0 < r["derived"]["decode_roofline"] <= 1.0, r["derived"]
        assert r["derived"]["bandwidth_set_by"] == bandwidth["set_by"]


def test_precision_is_part_of_the_scenario_and_recorded(tmp_path):
    """A tf32 row is its own scenario, recorded as such; on a CPU it is skipped with the reason."""
    gpu = usable_backends(("jax",)) and get_backend("jax").device_key() != "cpu"
    backend = "jax:gpu" if gpu else "numpy"
    path = tmp_path / "tf32.json"
    code = main(["bench", *TINY, "--repeats", "1", "--backends", backend, "--precision", "float32,tf32", "--peer",
                 "none", "--no-roofline", "--no-parity", "--json", str(path)])
    if not gpu:  # refused before any worker starts: numpy declares no tf32
        assert code == 2 and not path.exists()
        code = main(["bench", *TINY, "--repeats", "1", "--backends", backend, "--precision", "float32", "--peer",
                     "none", "--no-roofline", "--no-parity", "--json", str(path)])
        assert code == 0 and json.loads(path.read_text())["results"][0]["id"].endswith("/float32/b1/p8/n16")
        return
    doc = json.loads(path.read_text())
    rows = {r["precision"]: r for r in doc["results"]}
    assert set(rows) == {"float32", "tf32"} and rows["float32"]["status"] == "ok"
    assert rows["tf32"]["numerics"] == "float32+tf32" and rows["tf32"]["id"].endswith("/float32+tf32/b1/p8/n16")
    assert rows["float32"]["id"].endswith("/float32/b1/p8/n16")  # ids of plain float32 rows are as before
    assert rows["tf32"]["status"] == "ok"


def test_static_cache_peer_makes_the_eager_peers_tokens():
    import torch

    from arraygpt.benchmarks.runners.hf import HFRunner, HFStaticRunner
    scenario = Scenario(group="t", model="tiny", runner="hf", device=None, dtype="float32", batch=2, prompt_len=7,
                        new_tokens=10, warmup=0, repeats=1)
    eager = HFRunner(torch.device("cpu")).generate_ids(scenario)
    assert len(eager) == 2 and all(len(row) == 10 for row in eager)
    assert HFStaticRunner(torch.device("cpu")).generate_ids(scenario) == eager


def test_peers_run_on_the_devices_of_the_backends():
    from arraygpt.commands.bench import peer_devices
    assert peer_devices([("numpy", None), ("jax", "cpu")]) == [None]
    assert peer_devices([("jax", "gpu"), ("cupy", "gpu:0")]) == ["gpu"]
    assert peer_devices([("numpy", None), ("torch", "gpu")]) == [None, "gpu"]
    scenarios = expand(load_suite("quick"), [("jax", "gpu")], peers=["hf", "hf-static", "picogpt"],
                       peer_devices=["gpu"])
    assert {(s.runner, s.device) for s in scenarios} == {("jax", "gpu"), ("hf", "gpu"), ("hf-static", "gpu")}


def test_a_gpu_run_compares_with_hf_on_that_gpu(tmp_path):
    if not (usable_backends(("torch",)) and torch_has_cuda()):
        pytest.skip("no CUDA GPU for torch here: the HF peer can only run on the CPU")
    path = tmp_path / "gpu.json"
    assert main(["bench", *TINY, "--repeats", "2", "--backends", "torch:gpu", "--peer", "hf", "--no-parity",
                 "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    hf = next(r for r in doc["results"] if r["runner"] == "hf")
    ours = next(r for r in doc["results"] if r["runner"] == "torch")
    assert hf["device"] == "gpu" and hf["device_key"] == ours["device_key"] != "cpu"
    assert ours["derived"]["decode_tps_vs_hf"] > 0


def torch_has_cuda() -> bool:
    import torch
    return torch.cuda.is_available()
