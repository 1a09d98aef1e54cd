"""Nothing a user had is lost: output paths are checked before any work, bench results are replaced only
with --force, two benches cannot share a --json path, and init --force replaces only a checkpoint of ours.
Every case runs in a temporary directory."""

from __future__ import annotations

import json
import os
import time

import pytest

from helpers import LONG_BENCH, TINY_BENCH, cli, one_line_error, snapshot, start_cli, wait_for


@pytest.fixture(scope="module")
def earlier_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("earlier") / "run.json"
    result = cli(*TINY_BENCH, "--json", path)
    assert result.returncode == 0, result.stderr
    return path


def test_bench_never_overwrites_a_file_that_is_not_a_bench_result(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    start = time.time()
    err = one_line_error(cli(*TINY_BENCH, "--json", notes, "--force"))
    assert "arraygpt did not write" in err and notes.read_text() == "my notes\n"
    other = tmp_path / "parity.json"
    other.write_text(json.dumps({"kind": "arraygpt-parity", "cells": []}))
    assert "an arraygpt-parity file" in one_line_error(cli(*TINY_BENCH, "--json", other, "--force"))
    assert time.time() - start < 30  # refused before any worker or model


def test_an_earlier_bench_result_is_replaced_only_with_force(earlier_result, tmp_path):
    path = tmp_path / "run.json"
    path.write_bytes(earlier_result.read_bytes())
    before = path.read_bytes()
    assert "pass --force" in one_line_error(cli(*TINY_BENCH, "--json", path))
    assert path.read_bytes() == before
    assert cli(*TINY_BENCH, "--json", path, "--force").returncode == 0
    assert path.read_bytes() != before and json.loads(path.read_text())["complete"] is True


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink", "under-a-file"])
def test_bench_json_must_be_a_regular_file_or_a_new_path(tmp_path, kind):
    target = tmp_path / "out.json"
    real = tmp_path / "real.json"
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":  # stands for a device node: anything that is not a regular file
        os.mkfifo(target)
    elif kind == "symlink":
        real.write_text("precious")
        target.symlink_to(real)
    else:
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "out.json"
    before = snapshot(tmp_path)
    err = one_line_error(cli(*TINY_BENCH, "--json", target, "--force", timeout=60))
    assert {"directory": "is a directory", "fifo": "not a regular file", "symlink": "symbolic link",
            "under-a-file": "not a directory"}[kind] in err
    assert snapshot(tmp_path) == before


def test_two_benches_cannot_write_one_json_path(tmp_path):
    path = tmp_path / "shared.json"
    first = start_cli(*LONG_BENCH, "--json", path)
    try:
        wait_for(lambda: (tmp_path / ".shared.json.lock").exists(), timeout=60)
        second = cli(*TINY_BENCH, "--json", path, "--force", timeout=60)
        err = one_line_error(second)
        assert "another arraygpt bench is writing it" in err and f"pid {first.pid}" in err
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert not (tmp_path / ".shared.json.lock").exists()  # the lock goes with its bench


@pytest.mark.parametrize("kind", ["symlink", "user-file"])
def test_the_lock_never_touches_a_file_that_is_not_its_own(tmp_path, kind):
    """A link or a user's own file at the lock's name (.NAME.lock) is refused in one line, never followed,
    truncated or removed."""
    victim, lock = tmp_path / "victim.txt", tmp_path / ".run.json.lock"
    victim.write_text("precious\n")
    if kind == "symlink":
        lock.symlink_to(victim)
    else:
        lock.write_text("my own notes, named like a lock\n")
    before = snapshot(tmp_path)
    err = one_line_error(cli(*TINY_BENCH, "--json", tmp_path / "run.json", timeout=60))
    assert "not a lock of arraygpt's" in err and str(lock) in err
    assert snapshot(tmp_path) == before and (lock.is_symlink() if kind == "symlink" else lock.exists())


def test_a_lock_left_by_a_killed_bench_is_taken_over(tmp_path):
    lock = tmp_path / ".run.json.lock"
    lock.write_text("999999")  # a pid, and nobody holds the lock
    result = cli(*TINY_BENCH, "--json", tmp_path / "run.json", timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run.json").read_text())["complete"] is True and not lock.exists()


def test_a_file_put_at_the_output_during_a_bench_is_kept_and_the_results_go_beside_it(tmp_path):
    path = tmp_path / "run.json"
    bench = start_cli(*TINY_BENCH[:-6], "--new-tokens", "4,5,6", "--repeats", "1", "--warmup", "0", "--json", path)
    mine = b'{"kind": "arraygpt-bench", "mine": true}\n'
    try:
        wait_for(lambda: path.exists(), timeout=120, interval=0.02)  # the first save
        os.unlink(path)
        path.write_bytes(mine)  # the user's own file, put there while the bench runs
        _, err = bench.communicate(timeout=300)
    finally:
        bench.kill()
    assert bench.returncode == 0, err
    assert path.read_bytes() == mine
    moved = tmp_path / "run-2.json"
    assert json.loads(moved.read_text())["complete"] is True
    assert "another file appeared" in err and f"results: {moved}" in err


def test_other_outputs_are_checked_before_work(earlier_result, tmp_path):
    text = tmp_path / "verdicts.json"
    text.write_text("keep me")
    again = tmp_path / "again.json"
    again.write_bytes(earlier_result.read_bytes())
    err = one_line_error(cli("compare", earlier_result, again, "--json", text))
    assert "arraygpt did not write" in err and text.read_text() == "keep me"
    assert cli("compare", earlier_result, again, "--json", tmp_path / "v.json").returncode == 0
    assert json.loads((tmp_path / "v.json").read_text())["kind"] == "arraygpt-compare"
    # A verdict file is made again from its inputs: replacing one is fine.
    assert cli("compare", earlier_result, again, "--json", tmp_path / "v.json").returncode == 0
    picture = tmp_path / "chart.png"
    picture.write_text("not a picture")
    assert "not a PNG image" in one_line_error(cli("report", earlier_result, "-o", picture))
    assert "unknown image format '.gif'" in one_line_error(cli("plot", earlier_result, "-o", tmp_path / "x.gif"))
    (tmp_path / "file").write_text("x")
    assert "not a directory" in one_line_error(cli("plot", earlier_result, "-o", tmp_path / "file" / "x.png"))
    assert picture.read_text() == "not a picture"


def test_plot_names_the_file_it_wrote(earlier_result, tmp_path):
    result = cli("plot", earlier_result, "-o", tmp_path / "x")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG" and f"wrote {tmp_path / 'x.png'}" in result.stderr
    assert cli("plot", earlier_result, "-o", tmp_path / "x.png").returncode == 0  # its own picture: replaced


def test_init_force_replaces_only_an_arraygpt_checkpoint(tmp_path):
    home = tmp_path / "home"
    thesis = home / "thesis"
    thesis.mkdir(parents=True)
    (thesis / "thesis.tex").write_text("\\section{Results}")
    env = {"HOME": str(home)}
    before = snapshot(tmp_path)
    for target, why in ((".", "the current directory"), ("..", "one above it"), (str(home), "a home")):
        err = one_line_error(cli("init", "tiny", target, "--force", cwd=thesis, env=env))
        assert "refusing to replace" in err, (target, err)
    err = one_line_error(cli("init", "tiny", thesis, "--force", env=env))
    assert "files arraygpt did not write (thesis.tex)" in err
    assert snapshot(tmp_path) == before
    ours = tmp_path / "ckpt"
    assert cli("init", "tiny", ours).returncode == 0
    assert cli("init", "tiny", ours, "--seed", "2", "--force").returncode == 0  # ours: replaced
    assert json.loads((ours / "config.json").read_text())["arraygpt_synthetic"]["seed"] == 2
    (ours / "mine.txt").write_text("added by hand")
    assert "mine.txt" in one_line_error(cli("init", "tiny", ours, "--force"))
    assert (ours / "mine.txt").read_text() == "added by hand"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_init_into_the_empty_current_directory_keeps_it(tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    inode = here.stat().st_ino
    assert cli("init", "tiny", ".", cwd=here).returncode == 0
    assert here.stat().st_ino == inode and (here / "model.safetensors").exists()
    assert cli("generate", "hi", "--model", ".", "-n", "2", cwd=here).returncode == 0


def test_options_that_would_be_taken_as_something_else_are_refused(earlier_result, tmp_path):
    """An empty path is not the default path, the same run twice is not a comparison, and -o /dev/null is not
    /dev/null.png; a FIFO given as an input is refused at once, never waited on."""
    assert "no path given" in one_line_error(cli(*TINY_BENCH, "--json", "", timeout=60))
    assert "no path given" in one_line_error(cli("report", earlier_result, "-o", ""))
    assert "given twice" in one_line_error(cli("compare", earlier_result, earlier_result))
    assert "not a regular file" in one_line_error(cli("plot", earlier_result, "-o", "/dev/null"))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for argv in (("compare", fifo, earlier_result), ("report", fifo), ("plot", fifo), ("bench", "--suite", fifo)):
        assert "not a regular file" in one_line_error(cli(*argv, timeout=30))
    model = tmp_path / "model"
    model.mkdir()
    os.mkfifo(model / "config.json")
    assert "not a regular file" in one_line_error(cli("generate", "hi", "--model", model, timeout=30))


def test_plot_writes_beside_its_input_by_default(earlier_result, tmp_path):
    pytest.importorskip("matplotlib")
    results = tmp_path / "out" / "run.json"
    results.parent.mkdir()
    results.write_bytes(earlier_result.read_bytes())
    result = cli("plot", results, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "run.png").exists() and not (tmp_path / "bench.png").exists()
    assert str(tmp_path / "out" / "run.png") in result.stderr


def test_a_result_is_never_written_over_a_file_that_appeared_between_check_and_write(tmp_path):
    """The bench's save: where nothing was, the file is linked into place (a file that appeared wins); where our
    file was, it is exchanged in one step and what came out is checked (a file put there instead is put back).
    The window the old check-then-rename left is what make test once hit on a busy machine."""
    from arraygpt.benchmarks.jsonio import _exchange, write_json_atomic
    from arraygpt.benchmarks.outputs import identity
    path = tmp_path / "run.json"
    assert write_json_atomic(path, {"n": 1}, expect=None) == path
    ours = identity(path)
    assert write_json_atomic(path, {"n": 2}, expect=ours) == path and json.loads(path.read_text()) == {"n": 2}
    os.unlink(path)
    path.write_text("the user's")
    assert write_json_atomic(path, {"n": 3}, expect=identity(path.with_name("gone"))) is None   # expected nothing
    assert write_json_atomic(path, {"n": 3}, expect=ours) is None                               # expected ours
    assert path.read_text() == "the user's" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
    other = tmp_path / "other"
    other.write_text("b")
    if _exchange(str(other), str(path)):  # Linux: the exchange the save relies on swaps both names at once
        assert path.read_text() == "b" and other.read_text() == "the user's"
