"""``fsutil.atomic_path``: the one temp-file-then-rename, and every writer that goes through it."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import pydicom_file
from medsr import fsutil  # the module, so that the writer tests also run against older versions


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture
def fsyncs(monkeypatch) -> list[str]:
    """Records ``os.fsync`` calls as ``file`` or ``folder`` (by the descriptor's type), then syncs."""
    calls: list[str] = []
    real = os.fsync

    def record(descriptor: int) -> None:
        calls.append("folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file")
        real(descriptor)

    monkeypatch.setattr(os, "fsync", record)
    return calls


def test_success_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with fsutil.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp != target
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible before the block ends
    assert target.read_bytes() == b"new"
    assert not _leftovers(tmp_path)


def test_a_failure_inside_the_block_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half way"):
        with fsutil.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("half way")
    assert target.read_bytes() == b"old"
    assert not _leftovers(tmp_path)


def test_a_failing_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    fsutil.atomic_write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        fsutil.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and not _leftovers(tmp_path)


def test_the_file_and_then_its_folder_are_fsynced(tmp_path, fsyncs):
    with fsutil.atomic_path(tmp_path / "sub" / "out.bin") as tmp:  # the folder is created
        tmp.write_bytes(b"data")
    assert fsyncs == ["file", "folder"]
    assert (tmp_path / "sub" / "out.bin").read_bytes() == b"data"


def test_nothing_is_fsynced_or_renamed_when_the_block_fails(tmp_path, fsyncs):
    with pytest.raises(ValueError):
        with fsutil.atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"data")
            raise ValueError
    assert fsyncs == [] and not (tmp_path / "out.bin").exists()


def test_temporary_names_are_hidden_unique_per_thread_and_keep_the_extension(tmp_path):
    names: list[Path] = []
    thread = threading.Thread(target=lambda: names.append(fsutil.temporary_name(tmp_path / "scan.nii.gz")))
    thread.start()
    thread.join()
    here = fsutil.temporary_name(tmp_path / "scan.nii.gz")
    assert here != names[0] and here.parent == tmp_path
    assert here.name.startswith(".scan.nii.gz.") and here.name.endswith(".tmp.nii.gz")
    assert fsutil.temporary_name(tmp_path / "figure.png").name.endswith(".tmp.png")
    assert str(os.getpid()) in here.name


def _png16(path: Path) -> None:
    from medsr.io.raster import write_png16

    write_png16(path, np.linspace(0, 1, 64).reshape(8, 8))


def _checkpoint(path: Path) -> None:
    from medsr.models.checkpoint import save_checkpoint

    save_checkpoint(path, {"epoch": 1})


def _dicom(path: Path) -> None:
    from medsr.io.dicom_write import write_dataset

    write_dataset(pydicom.dcmread(pydicom_file("CT_small.dcm")), path)


def _figure(path: Path) -> None:
    from medsr.report.figures import comparison_figure

    image = np.random.default_rng(0).random((32, 32))
    comparison_figure(path, image, image[::2, ::2], {"bicubic": image}, {"bicubic": (30.0, 0.9)}, "title")


def _curves(path: Path) -> None:
    from medsr.train.logs import RunLog

    RunLog(path.parent, tensorboard=False).write(
        [{"epoch": 1, "train_psnr": 20.0, "val_psnr": 21.0, "train_ssim": 0.5, "val_ssim": 0.6}]
    )


@pytest.mark.parametrize(
    ("writer", "name"),
    [
        (_png16, "image.png"),
        (_checkpoint, "last.pt"),
        (_dicom, "sr.dcm"),
        (_figure, "figure.png"),
        (_curves, "curves_psnr.png"),
    ],
)
def test_every_writer_replaces_atomically_and_durably(tmp_path, fsyncs, writer, name):
    """Each of these hand-rolled its own temp-file-then-rename before; none synced the folder."""
    writer(tmp_path / name)
    assert (tmp_path / name).stat().st_size > 0
    assert "file" in fsyncs and "folder" in fsyncs
    assert not _leftovers(tmp_path)
