"""Shared fixtures: tiny real images (pydicom's and nibabel's own test files) and helpers."""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

logging.getLogger("pydicom").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="pydicom")

NIBABEL_DATA = Path(__import__("nibabel").__file__).parent / "tests" / "data"
ROOT = Path(__file__).resolve().parent.parent  # the repository (configs/, benchmarks/)


def pydicom_file(name: str) -> Path:
    """Path of one of pydicom's bundled real test files."""
    return Path(get_testdata_file(name))


def write_ct_series(
    folder: Path, count: int = 3, *, patient: str = "PAT-1", series_uid: str | None = None
) -> list[Path]:
    """A CT series of ``count`` slices made from pydicom's real CT_small.dcm (rolled so they differ)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    series_uid = series_uid or generate_uid()
    paths = []
    for index in range(count):
        ds = source.copy()
        pixels = np.roll(source.pixel_array, 7 * index, axis=1)
        ds.PixelData = pixels.astype(source.pixel_array.dtype).tobytes()
        ds.PatientID = patient
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(index) * 5.0]
        path = folder / f"1-{index + 1:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_ct_dataset(root: Path, patients: int, split: str) -> Path:
    """A prepared data set of ``patients`` real-CT patients with 2 slices each (no detail filter)."""
    from medsr.data.prepare import KeepRule, PrepareOptions, prepare
    from medsr.data.split import SplitSpec

    for index in range(patients):
        write_ct_series(root / "src" / f"P{index}", 2, patient=f"P{index}")
    out = root / "dataset"
    prepare(
        [root / "src"],
        out,
        PrepareOptions(size=None, min_size=64, keep=KeepRule("all"), split=SplitSpec.parse(split), workers=1),
    )
    return out


def tree_digest(folder: Path) -> str:
    """Hash of every file's path, bytes and mtime under ``folder`` (to prove it is untouched)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
        digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()


@pytest.fixture
def ct_small() -> Path:
    return pydicom_file("CT_small.dcm")


@pytest.fixture
def mr_small() -> Path:
    return pydicom_file("MR_small.dcm")


def lpips_weights_or_skip() -> None:
    """Fetch the LPIPS weights (once per machine) or skip where the registry cannot be reached,
    unless MEDSR_REQUIRE_SERVICES says it must be (CI)."""
    import os

    from medsr.errors import DownloadError
    from medsr.metrics.lpips import weights_path

    try:
        weights_path()
    except DownloadError as exc:
        if os.environ.get("MEDSR_REQUIRE_SERVICES"):
            raise
        pytest.skip(f"LPIPS weights not cached and the registry is unreachable: {exc}")
