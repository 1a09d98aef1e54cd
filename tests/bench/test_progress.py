"""What the main job says while it runs (issue 29): its plan first, every skipped or failed line with its reason,
and off a terminal a line at least every 30 s while a scenario runs long."""

from __future__ import annotations

import time

from helpers import TINY_BENCH, cli


def test_the_plan_comes_first(tmp_path):
    result = cli(*TINY_BENCH, "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("plan: 1 scenario(s) x 1 round(s) on 1 runner(s) (numpy)") and str(tmp_path / "r.json") in first


def test_a_long_scenario_says_it_is_still_running(capsys):
    from arraygpt.commands.bench import Heartbeat
    beat = Heartbeat(enabled=True)
    beat.EVERY_S = 0.5
    with beat:
        beat.now_running("tiny/numpy/float32/b1/p4/n300")
        time.sleep(2.6)
        beat.now_running(None)
        time.sleep(1.2)
    lines = [line for line in capsys.readouterr().err.splitlines() if "still running" in line]
    assert 2 <= len(lines) <= 5 and all("tiny/numpy/float32/b1/p4/n300" in line for line in lines)
