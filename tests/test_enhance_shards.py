"""``medsr enhance`` over many series: sharded across torchrun processes (whole series each, same
outputs as one process) and resumable (finished series skipped, only with the same model)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from conftest import tree_digest, write_ct_series
from medsr.cli import main
from medsr.enhance import EnhanceOptions, enhance_paths
from medsr.enhance_state import STATE_DIR, Shard, assign
from medsr.io import read_slices
from medsr.models import load_model


def test_assign_balances_whole_jobs_by_size_and_is_deterministic():
    weights = [50, 10, 40, 30, 20, 10]
    ranks = assign(weights, 2)
    assert ranks == assign(weights, 2) and set(ranks) == {0, 1}
    loads = [sum(w for w, r in zip(weights, ranks) if r == rank) for rank in (0, 1)]
    assert abs(loads[0] - loads[1]) <= 10
    assert assign(weights, 1) == [0] * 6 and sorted(assign([5, 5, 5], 3)) == [0, 1, 2]


@pytest.fixture
def tree(tmp_path) -> Path:
    """Four real-CT series of 1-3 slices under one folder."""
    for index, count in enumerate((3, 1, 2, 2)):
        write_ct_series(tmp_path / "tree" / f"P{index}" / "s", count, patient=f"P{index}")
    return tmp_path / "tree"


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): read_slices(p)[0].pixels for p in sorted(folder.rglob("*.dcm"))}


def test_two_torchrun_processes_write_what_one_process_writes(tree, tmp_path):
    before = tree_digest(tree)
    assert main(["enhance", str(tree), "-o", str(tmp_path / "one"), "--model", "medsr-x4"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "medsr", "enhance", str(tree), "-o", str(tmp_path / "two"), "--model", "medsr-x4"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert tree_digest(tree) == before
    one, two = _pixels(tmp_path / "one"), _pixels(tmp_path / "two")
    assert sorted(one) == sorted(two) and len(one) == 8
    assert all(np.array_equal(one[k], two[k]) for k in one)
    assert "process 1 of 2: " in done.stdout and "process 2 of 2: " in done.stdout
    written = [int(line.split(": ")[1].split()[0]) for line in done.stdout.splitlines() if "process" in line]
    assert sum(written) == 8 and all(n > 0 for n in written)  # both worked, nothing twice
    for series in (tmp_path / "two").glob("P*/s"):  # a whole series from one process: one new UID
        assert len({pydicom.dcmread(p).SeriesInstanceUID for p in series.glob("*.dcm")}) == 1


def test_a_rerun_skips_finished_series_and_redoes_the_rest(tree, tmp_path):
    out = tmp_path / "out"
    model = load_model("bicubic")
    assert len(enhance_paths([tree], out, model).written) == 8
    (out / "P2" / "s" / "1-02.dcm").unlink()  # as if the run had been killed inside series P2
    stamp = (out / "P0" / "s" / "1-01.dcm").stat().st_mtime_ns
    again = enhance_paths([tree], out, model)
    assert sorted(p.relative_to(out).as_posix() for p in again.written) == ["P2/s/1-01.dcm", "P2/s/1-02.dcm"]
    assert len(again.skipped) == 3 and (out / "P0" / "s" / "1-01.dcm").stat().st_mtime_ns == stamp
    other = enhance_paths([tree], out, load_model("bilinear"))  # another model: nothing is kept
    assert len(other.written) == 8 and not other.skipped


def test_outputs_from_another_input_or_model_settings_are_never_kept(tmp_path):
    out, model = tmp_path / "out", load_model("bicubic")
    for name, value in (("A", 0.2), ("B", 0.8)):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "scan.png"), np.full((16, 16), value * 65535, np.uint16))
    for name in ("A", "B", "A"):  # the same output file from two inputs in turn
        report = enhance_paths([tmp_path / name / "scan.png"], out, model)
        assert len(report.written) == 1 and not report.skipped
    assert read_slices(out / "scan.png")[0].pixels.mean() < 0.5 * 65535  # A's, not B's
    assert enhance_paths([tmp_path / "A" / "scan.png"], out, model).skipped  # now it is done
    cv2.imwrite(str(tmp_path / "A" / "scan.png"), np.full((16, 16), 9000, np.uint16))  # replaced in place
    assert enhance_paths([tmp_path / "A" / "scan.png"], out, model).written
    assert enhance_paths([tmp_path / "A" / "scan.png"], out, model, EnhanceOptions(tile=64)).written


def test_an_interrupted_job_leaves_no_marker(tree, tmp_path, monkeypatch):
    import medsr.enhance as enhance_module

    out = tmp_path / "out"
    enhance_paths([tree], out, load_model("bicubic"))

    def interrupted(*args):
        raise KeyboardInterrupt  # killed after the outputs, before the marker

    monkeypatch.setattr(enhance_module, "mark_done", interrupted)
    with pytest.raises(KeyboardInterrupt):
        enhance_paths([tree], out, load_model("nearest"))
    monkeypatch.undo()
    again = enhance_paths([tree], out, load_model("bicubic"))
    assert again.written  # the job the other model rewrote is done again, not skipped


def test_a_failed_series_leaves_no_marker_and_is_retried(tree, tmp_path):
    broken = tree / "P1" / "s" / "1-01.dcm"
    good = broken.read_bytes()
    broken.write_bytes(good[:400])  # truncated: the header reads, the pixels do not
    out = tmp_path / "out"
    first = enhance_paths([tree], out, load_model("bicubic"))
    assert len(first.failed) == 1 and len(first.written) == 7
    broken.write_bytes(good)
    second = enhance_paths([tree], out, load_model("bicubic"))
    assert [p.relative_to(out).as_posix() for p in second.written] == ["P1/s/1-01.dcm"]
    assert len(list((out / STATE_DIR).glob("*.json"))) == 4


def test_each_shard_takes_its_own_series(tree, tmp_path):
    model = load_model("bicubic")
    reports = [enhance_paths([tree], tmp_path / "out", model, shard=Shard(rank, 3)) for rank in range(3)]
    written = [sorted(p.relative_to(tmp_path / "out").as_posix() for p in r.written) for r in reports]
    assert sum(len(w) for w in written) == 8 and len({p for w in written for p in w}) == 8
    assert all(not r.skipped for r in reports)
