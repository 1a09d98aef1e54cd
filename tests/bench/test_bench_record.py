"""The bench's record tells the truth however the bench ends: complete is false when a scenario did not
finish, and Ctrl-C, SIGTERM, SIGHUP or a killed worker leave no worker running and no temporary files."""

from __future__ import annotations

import json
import os
import signal

import pytest

from helpers import TINY_BENCH, alive, bench_rows, children, start_cli, wait_for

# Two groups, so a run has a finished scenario before the long one starts.
QUICK_THEN_LONG = """
[defaults]
model = "tiny"
dtype = "float32"
warmup = 0
peers = []
[[group]]
name = "quick"
batch = 1
prompt_len = 4
new_tokens = 4
repeats = 1
[[group]]
name = "long"
batch = 1
prompt_len = 300
new_tokens = 300
repeats = 50
"""


def start_bench(tmp_path, *extra, suite_text=QUICK_THEN_LONG):
    suite = tmp_path / "suite.toml"
    suite.write_text(suite_text)
    path = tmp_path / "run.json"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    process = start_cli("bench", "--suite", suite, "--backends", "numpy", "--no-roofline", "--no-parity",
                        "--json", path, *extra, env={"TMPDIR": str(tmp)})
    wait_for(lambda: bench_rows(path), timeout=120)  # the quick scenario is in the file
    worker = wait_for(lambda: children(process.pid), timeout=60)[0]
    return process, worker, path, tmp


def test_a_killed_worker_makes_the_run_incomplete(tmp_path):
    process, worker, path, tmp = start_bench(tmp_path)
    os.kill(worker, signal.SIGKILL)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    doc = json.loads(path.read_text())
    assert doc["complete"] is False
    statuses = {r["id"].split("/")[-2]: r["status"] for r in doc["results"]}
    assert statuses == {"p4": "ok", "p300": "error"}
    assert "worker exited with code -9" in doc["results"][1]["message"]
    assert not list(tmp.iterdir())  # the temporary directory went with the run


def test_a_worker_killed_in_round_one_stays_on_record_when_round_two_measures_again(tmp_path):
    """Round 2 measures the killed scenario again: its row is ok, but the crash stays beside it (round_errors),
    the run is incomplete and the bench exits 1."""
    two_rounds = QUICK_THEN_LONG.replace("repeats = 1\n", "repeats = 2\n")  # each round times one of each
    process, worker, path, tmp = start_bench(tmp_path, "--rounds", "2", suite_text=two_rounds)
    os.kill(worker, signal.SIGKILL)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    doc = json.loads(path.read_text())
    assert doc["complete"] is False
    long = next(r for r in doc["results"] if "/p300/" in r["id"])
    assert long["status"] == "ok" and "worker exited with code -9" in long["round_errors"][0]
    assert "1 scenario(s) failed" in err


def test_a_runner_that_cannot_run_here_measures_nothing_and_says_so(tmp_path):
    from helpers import cli
    path = tmp_path / "run.json"
    result = cli("bench", "--models", "tiny", "--backends", "jax:gpu", "--peer", "none", "--no-roofline", "--no-parity",
                 "--new-tokens", "4", "--repeats", "1", "--warmup", "0", "--json", path, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "nothing was measured" in last and "no gpu device" in last.lower()
    # every skipped line says why (off a terminal: a line per scenario)
    assert all("no gpu device" in line.lower() for line in result.stderr.splitlines() if ": skipped" in line)
    # a library that is not installed at all is refused before any work
    err = cli("bench", "--models", "tiny", "--backends", "cupy", "--peer", "none", "--json", tmp_path / "r2.json")
    assert err.returncode == 2 and "nothing to measure: cupy needs cupy" in err.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_every_way_to_stop_a_bench_ends_its_worker_and_cleans_up(tmp_path, signum):
    process, worker, path, tmp = start_bench(tmp_path)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == (130 if signum == signal.SIGINT else 128 + signum), err
    assert "Traceback" not in err and "kept in" in err
    wait_for(lambda: not alive(worker), timeout=30)
    doc = json.loads(path.read_text())
    assert doc["complete"] is False and [r["status"] for r in doc["results"]] == ["ok"]
    assert not list(tmp.iterdir())
    assert not (tmp_path / ".run.json.lock").exists()


def test_a_worker_dies_with_its_bench_even_when_the_bench_is_killed(tmp_path):
    process, worker, path, tmp = start_bench(tmp_path)
    process.kill()  # SIGKILL: no handler runs in the bench; the worker goes by PR_SET_PDEATHSIG
    process.communicate(timeout=60)
    wait_for(lambda: not alive(worker), timeout=30)
    assert json.loads(path.read_text())["complete"] is False
    assert [p.name for p in tmp.iterdir()][0].startswith(f"arraygpt-bench-{process.pid}-")  # left behind...
    from helpers import TINY_BENCH, cli
    assert cli(*TINY_BENCH, "--json", tmp_path / "next.json", env={"TMPDIR": str(tmp)}).returncode == 0
    assert not list(tmp.iterdir())  # ...and removed by the next bench


def test_a_finished_run_is_complete(tmp_path):
    from helpers import cli
    path = tmp_path / "run.json"
    assert cli(*TINY_BENCH, "--json", path).returncode == 0
    assert json.loads(path.read_text())["complete"] is True


def test_a_full_disk_while_writing_the_result_is_one_line(tmp_path):
    """ulimit -f makes the result file's write fail (EFBIG) as a full disk does (ENOSPC): one line naming
    the file, exit 2, the worker ended, no temporary directory or lock left."""
    import shlex
    import subprocess
    import sys
    from helpers import LONG_BENCH
    from arraygpt.engine.source import resolve_model
    resolve_model("tiny")  # the preset exists before the limit: only the result file grows past it
    path, tmp = tmp_path / "r.json", tmp_path / "tmp"
    tmp.mkdir()
    argv = [a if a != "50" else "2" for a in LONG_BENCH] + ["--json", str(path)]
    command = shlex.join([sys.executable, "-m", "arraygpt", *argv])
    result = subprocess.run(["bash", "-c", f"ulimit -f 4; exec {command}"], capture_output=True, text=True,
                            env=os.environ | {"TMPDIR": str(tmp)}, timeout=300)
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("plan: ")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr  # the plan, then one line
    assert "File too large" in result.stderr and str(path) in result.stderr
    assert not list(tmp.iterdir()) and not (tmp_path / ".r.json.lock").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_during_cleanup_still_cleans_up(tmp_path, signum):
    import time
    process, worker, path, tmp = start_bench(tmp_path)
    process.send_signal(signum)
    time.sleep(0.05)  # the bench is now killing its worker and keeping its rows
    process.send_signal(signum)
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=120)
    assert process.returncode == (130 if signum == signal.SIGINT else 128 + signum), err
    assert "Traceback" not in err
    wait_for(lambda: not alive(worker), timeout=30)
    assert json.loads(path.read_text())["complete"] is False
    assert not list(tmp.iterdir()) and not (tmp_path / ".run.json.lock").exists()
