"""Shared by the benchmarks: real 512x512 chest CT (the sample data's lung volumes) as DICOM files,
and the median timer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from medsr.data import sample
from medsr.io import read_slices


def write_ct_dicom_tree(root: Path, copies: int, slices: int | None = None) -> int:
    """One CT DICOM file per 512x512 slice of pyradiomics lung1/lung2 (the first ``slices`` of
    each, or all), ``copies`` patients each.

    Returns the number of files written (109 per copy with every slice)."""
    folder = sample.fetch_samples()
    template = pydicom.dcmread(folder / "pydicom-data" / "693_UNCR.dcm")
    count = 0
    for copy in range(copies):
        for name in ("lung1", "lung2"):
            series = generate_uid()
            for item in read_slices(folder / "pyradiomics" / f"{name}.nrrd")[:slices]:
                ds = template.copy()
                ds.PatientID = f"bench-{name}-{copy}"
                ds.SeriesInstanceUID = series
                ds.SOPInstanceUID = generate_uid()
                ds.InstanceNumber = item.meta.frame + 1
                ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
                ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
                ds.PixelData = np.clip(item.pixels + 1024, 0, 4095).astype(np.uint16).tobytes()
                path = root / ds.PatientID / f"{item.meta.frame:03d}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                count += 1
    return count


def median_time(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``function`` in seconds over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
