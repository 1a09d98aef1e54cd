"""Run validity, adaptive repeats, CPU threads and energy: what makes a bench figure trustworthy on a
shared machine (benchmarks/measure/load.py and judge/validity.py, measure/timing.run_repeats, the worker's thread pinning, measure/energy.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from helpers import cli, one_line_error

TINY = ["bench", "--models", "tiny", "--peer", "none", "--no-roofline", "--no-parity"]


def suite_file(tmp_path, body: str, validity: str = "") -> str:
    path = tmp_path / "suite.toml"
    path.write_text('[defaults]\nmodel = "tiny"\ndtype = "float32"\nwarmup = 1\nrepeats = 3\npeers = []\n'
                    + (f"[validity]\n{validity}\n" if validity else "") + body)
    return str(path)


# A disturbance started during one runner: busy loops on every core while the second runner (numpy; jax
# runs first, workers go in label order) times its later scenarios. They must be marked, jax's not. Run
# alone (`-m solo`, make test's second pass): under pytest-xdist the other worker is itself other load.
# Steal and drift are judged off here: on this shared VM the hypervisor steals 5-50% of a short window now
# and then, which no test controls (measured: 51% over one 0.29 s scenario of an undisturbed run), and
# three probes' median moves with the disturbed one. The test holds the load meter to account; the rules
# on steal and drift are tested on recorded figures (test_judged_from_what_was_recorded). It passes while
# other processes run: what it asserts of the undisturbed rows is what their own measured load implies.
@pytest.mark.solo
def test_a_runner_disturbed_on_purpose_is_marked_and_an_undisturbed_one_is_not(tmp_path):
    suite = suite_file(tmp_path, '[[group]]\nname = "warm"\nbatch = 1\nprompt_len = 16\nnew_tokens = [8]\n'
                                 '[[group]]\nname = "long"\nbatch = 1\nprompt_len = 16\nnew_tokens = [300, 301]\n',
                       "max_steal = 1.0\nmax_drift = 10.0")
    out = tmp_path / "r.json"
    bench = subprocess.Popen([sys.executable, "-m", "arraygpt", *TINY, "--suite", suite, "--backends", "jax,numpy",
                              "--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busy = []
    try:
        for line in bench.stderr:  # not a terminal: a plain line per finished scenario
            if line.startswith("[4/6]"):  # jax's three and numpy's warm one are done: disturb the rest
                busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
            if line.startswith("[6/6]"):
                break
        bench.communicate(timeout=300)
    finally:
        for p in busy:
            p.kill()
        bench.kill()
    assert busy, "the bench never reported its fourth scenario"
    doc = json.loads(out.read_text())
    rows = {r["id"]: r for r in doc["results"]}
    for n in (300, 301):
        disturbed = rows[f"tiny/numpy/float32/b1/p16/n{n}"]
        assert disturbed["validity"]["status"] == "unsteady", disturbed["validity"]
        assert any("other load" in reason for reason in disturbed["validity"]["reasons"])
        assert disturbed["metrics"]["load"]["other_cores"] > 0.5
    # jax's rows ran before the disturbance: the meter must see the busy loops as more load than anything jax
    # saw, and each jax row is judged by what it measured. On a quiet machine they are valid; on a shared one
    # (CI, another test run) they may be unsteady for other load, and for nothing else. A jax row that itself saw
    # other load (> 0.2 cores) says nothing of the meter's margin; with no quiet jax row the test skips, saying so.
    least_disturbed = min(rows[f"tiny/numpy/float32/b1/p16/n{n}"]["metrics"]["load"]["other_cores"] for n in (300, 301))
    calm_loads = {n: rows[f"tiny/jax/float32/b1/p16/n{n}"]["metrics"]["load"]["other_cores"] for n in (8, 300, 301)}
    calm_unsteady = 0
    for n in (8, 300, 301):
        calm = rows[f"tiny/jax/float32/b1/p16/n{n}"]
        load = calm_loads[n]
        assert load > 0.2 or least_disturbed > load + 0.5, (least_disturbed, calm["metrics"]["load"])
        if calm["validity"]["status"] != "valid":
            assert calm["validity"]["status"] == "unsteady" and load > 0.2, (calm["validity"], calm["metrics"]["load"])
            assert all(reason.startswith("other load") for reason in calm["validity"]["reasons"]), calm["validity"]
            calm_unsteady += 1
    assert doc["validity"]["status"] == "unsteady" and doc["validity"]["counts"]["unsteady"] == 2 + calm_unsteady
    assert doc["validity"]["line"].startswith(f"not valid: {2 + calm_unsteady} unsteady of 6 scenarios")
    if min(calm_loads.values()) > 0.2:
        pytest.skip(f"the machine was busy before the disturbance (other load in every jax row: {calm_loads}): "
                    "the meter's margin between quiet and disturbed rows could not be measured")
    # the drift probe after numpy ran under the busy loops too
    assert doc["drift"][-1]["bandwidth_bytes_s"] < max(p["bandwidth_bytes_s"] for p in doc["drift"])


def test_threads_reach_every_library_and_the_worker_runs_on_that_many_cores(tmp_path):
    out = tmp_path / "r.json"
    result = cli(*TINY, "--backends", "numpy,torch,jax", "--peer", "hf", "--threads", "1", "--batch-sizes", "8",
                 "--prompt-lens", "16", "--new-tokens", "64", "--json", out, "--suite", "ci")
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["results"]
    assert {r["runner"] for r in rows} == {"numpy", "torch", "jax", "hf"}
    for r in rows:
        assert r["status"] == "ok" and "@1t/" in r["id"] and r["threads"] == 1
        seen = r["metrics"]["threads"]
        assert seen["cores"] == 1, seen                                 # the OS: pinned to one core
        assert set(seen["pools"].values()) == {1}, seen                 # every BLAS/OpenMP pool loaded
        if r["runner"] in ("torch", "hf"):
            assert seen["library"] == 1                                 # torch.get_num_threads()
        # and it did not compute on more: CPU time over wall time, from /proc (a tick per CPU of slack)
        load = r["metrics"]["load"]
        assert load["own_cores"] <= 1 + 2 / load["ticks"]["per_s"] / load["wall_s"] + 0.02, (r["id"], load)


def test_target_ci_repeats_until_the_interval_is_narrow_or_the_budget_is_spent(tmp_path):
    out = tmp_path / "r.json"
    result = cli(*TINY, "--backends", "numpy", "--batch-sizes", "1", "--prompt-lens", "16", "--new-tokens", "1",
                 "--repeats", "1", "--target-ci", "25%", "--ci-budget", "20", "--json", out, "--suite", "ci")
    assert result.returncode == 0, result.stderr
    row = next(r for r in json.loads(out.read_text())["results"] if r["new_tokens"] == 1)
    target = row["metrics"]["target_ci"]
    assert target["repeats"] == len(row["repeats"]) >= 6     # no 95% interval for the median below 6
    interval = row["metrics"]["prefill_tps"]["ci95"]
    values = sorted(r["prefill_tps"] for r in row["repeats"])
    assert values[0] <= interval["low"] <= row["metrics"]["prefill_tps"]["median"] <= interval["high"] <= values[-1]
    assert interval["coverage"] >= 0.95
    assert target["met"] == (target["achieved"] <= 0.25)
    # An unreachable target within a tiny budget: the width reached is recorded and the row is unsteady.
    out2 = tmp_path / "r2.json"
    result = cli(*TINY, "--backends", "numpy", "--batch-sizes", "1", "--prompt-lens", "16", "--new-tokens", "64",
                 "--repeats", "3", "--target-ci", "0.001%", "--ci-budget", "0.5", "--json", out2, "--suite", "ci")
    row = next(r for r in json.loads(out2.read_text())["results"] if r["new_tokens"] == 64)
    assert row["metrics"]["target_ci"]["met"] is False and row["validity"]["status"] == "unsteady"
    assert any("target" in reason or "95% CI" in reason for reason in row["validity"]["reasons"])
    assert "not valid" in result.stderr.splitlines()[-1]


def test_suite_minimums_make_rows_invalid_and_bad_rules_are_one_line(tmp_path):
    out = tmp_path / "r.json"
    suite = suite_file(tmp_path, '[[group]]\nname = "d"\nbatch = 1\nprompt_len = 4\nnew_tokens = 8\n',
                       "min_repeats = 5\nmin_seconds = 0")
    result = cli(*TINY, "--backends", "numpy", "--suite", suite, "--json", out)
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    validity = doc["results"][0]["validity"]
    assert validity["status"] == "invalid" and validity["reasons"][0] == "3 timed repeats < 5"
    assert doc["validity"]["status"] == "invalid" and "1 invalid of 1" in result.stderr.splitlines()[-1]
    assert doc["suite"]["validity"]["min_repeats"] == 5
    for rules, said in (("max_drift = -1", "max_drift must be a number >= 0"), ("fastest = 1", "unknown field"),
                        ("min_repeats = 2.5", "min_repeats must be a whole number")):
        bad = suite_file(tmp_path, '[[group]]\nname = "d"\nbatch = 1\nprompt_len = 4\nnew_tokens = 8\n', rules)
        assert said in one_line_error(cli(*TINY, "--backends", "numpy", "--suite", bad, "--list"))
    assert "--target-ci" in one_line_error(cli(*TINY, "--backends", "numpy", "--target-ci", "fast", "--list"))
    assert "--threads 4096: this process may use" in one_line_error(
        cli(*TINY, "--backends", "numpy", "--threads", "4096", "--list"))


def test_energy_is_no_meter_here_never_zero(tmp_path):
    """This machine exposes no RAPL counters (no /sys/class/powercap) and no GPU: every row says so."""
    from arraygpt.benchmarks.measure.energy import rapl_packages
    if rapl_packages():
        pytest.skip("this machine has RAPL counters; the rows would carry joules")
    out = tmp_path / "r.json"
    result = cli(*TINY, "--backends", "numpy", "--batch-sizes", "1", "--prompt-lens", "4", "--new-tokens", "4",
                 "--repeats", "1", "--warmup", "0", "--json", out)
    energy = json.loads(out.read_text())["results"][0]["metrics"]["energy"]
    assert energy["meter"] is None and energy["reason"].startswith("no meter") and "joules" not in energy
    assert "energy: not measured (no meter" in result.stderr


def test_rapl_counters_are_read_per_package_and_across_a_wrap(tmp_path):
    """The powercap files as Linux lays them out (package domains and their sub-domains)."""
    from arraygpt.benchmarks.measure.energy import EnergyMeter
    for name, value in (("intel-rapl:0", 1_000_000), ("intel-rapl:1", 262_143_000_000), ("intel-rapl:0:0", 5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "energy_uj").write_text(f"{value}\n")
        (tmp_path / name / "max_energy_range_uj").write_text("262143328850\n")
    with EnergyMeter("cpu", powercap=tmp_path) as meter:
        (tmp_path / "intel-rapl:0" / "energy_uj").write_text("4000000\n")      # +3 J
        (tmp_path / "intel-rapl:1" / "energy_uj").write_text("671149\n")       # wrapped: +1 J
        (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("9000000\n")    # inside package 0: not counted
        time.sleep(0.05)
    record = meter.result(tokens=8)
    assert record["meter"] == "rapl:intel-rapl:0,intel-rapl:1"
    assert record["joules"] == pytest.approx(4.0, abs=1e-6) and record["joules_per_token"] == pytest.approx(0.5)
    assert 0 < record["watts"] < 4.0 / 0.05 + 1e-9


def test_judged_from_what_was_recorded():
    """The rules on recorded figures: the counters' resolution is not load, a row over 100% of roofline
    is unsteady, drift marks the runner between the two probes it lies between."""
    import dataclasses

    from arraygpt.benchmarks.records import Derived, Metrics, Result, Stat
    from arraygpt.benchmarks.judge.validity import RULES, judge_result
    ticks = {"other": 2, "steal": 2, "total": 40, "cpus": 2, "per_s": 100}

    def row(runner="numpy", roofline=0.5, load=None):
        metrics = Metrics(decode_tps=Stat(1.0), load=load or {"other_cores": 0.1, "steal": 0.05, "wall_s": 0.2,
                                                                "ticks": ticks})
        return Result(id="x", runner=runner, model="tiny", dtype="float32", batch=1, prompt_len=4, new_tokens=4,
                      status="ok", metrics=metrics, repeats=[{"e2e_s": 0.07}] * 3,
                      derived=Derived(decode_roofline=roofline))

    judged = judge_result(row(), RULES, [])
    assert (judged.status, judged.reasons, judged.short) == ("valid", (), ())
    assert judge_result(row(roofline=1.11), RULES, []).short == ("roof 111%",)
    assert judge_result(row(roofline=1.11), RULES, []).reasons == (
        "111% of roofline: the run's ceiling is below what the row reached",)
    # probes (bandwidth GB/s) 20 before jax, 20 between, 8 after numpy: numpy ran at (20 + 8) / 2 = 14, 30%
    # under the run's median of 20; jax at 20
    probes = [{"after": after, "before": before, "bandwidth_bytes_s": bw * 1e9, "matmul_flops_s": 1e11}
              for after, before, bw in ((None, "jax", 20), ("jax", "numpy", 20), ("numpy", None, 8))]
    assert judge_result(row("jax"), RULES, probes).status == "valid"
    assert judge_result(row("numpy"), RULES, probes).reasons == ("machine drifted 30% around this runner > 25%",)
    # two rounds, alternating (jax numpy | numpy jax), the slow spell between the rounds: numpy's probes
    # 20, 8, 20 (a mean 20% under the median), so the pooled row is valid
    sequence = ((None, "jax", 20), ("jax", "numpy", 20), ("numpy", "numpy", 8), ("numpy", "jax", 20), ("jax", None, 20))
    rounds = [{"after": after, "before": before, "bandwidth_bytes_s": bw * 1e9, "matmul_flops_s": 1e11}
              for after, before, bw in sequence]
    assert judge_result(row("numpy"), RULES, rounds).status == "valid"
    assert judge_result(row("jax"), RULES, rounds).status == "valid"
    stolen = row(load={"other_cores": 0.0, "steal": 0.3, "wall_s": 3.0, "ticks": ticks | {"steal": 180, "total": 600}})
    assert judge_result(stolen, RULES, []).reasons == ("30% of CPU time stolen > 10%",)
    assert dataclasses.replace(stolen, runner="jax").worker == "jax"


def test_rounds_alternate_the_runners_and_pool_their_repeats(tmp_path):
    out = tmp_path / "r.json"
    result = cli(*TINY, "--backends", "numpy,jax", "--batch-sizes", "1", "--prompt-lens", "8", "--new-tokens", "16",
                 "--repeats", "3", "--rounds", "2", "--json", out, "--suite", "ci")
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    # ABBA: a probe before each worker and one at the end
    assert [p["before"] for p in doc["drift"]] == ["jax", "numpy", "numpy", "jax", None]
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 2 * len(doc["results"]) and progress[-1].startswith(f"[{len(progress)}/{len(progress)}]")
    for r in doc["results"]:
        assert r["rounds"] == 2 and len(r["repeats"]) == 3   # 2 in the first round, 1 in the second
        metric = "decode_tps" if r["new_tokens"] > 1 else "prefill_tps"
        values = sorted(x[metric] for x in r["repeats"])
        assert r["metrics"][metric]["median"] == pytest.approx(values[1])  # of all three
        assert r["metrics"]["load"]["wall_s"] > 0 and r["metrics"][metric]["n"] == 3
    assert doc["suite"]["rounds"] == 2 and doc["complete"] is True
    # a suite's rounds give way to fewer repeats; asked for, they must fit
    one = cli(*TINY, "--backends", "numpy", "--suite", "quick", "--repeats", "1", "--list")
    assert one.returncode == 0
    assert "--rounds 2 needs at least 2 repeats" in one_line_error(
        cli(*TINY, "--backends", "numpy", "--repeats", "1", "--rounds", "2", "--list"))
