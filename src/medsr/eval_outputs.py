"""The layout of an evaluation's saved reconstructions (``medsr evaluate --save-outputs``).

``EVAL/outputs/<method>/<image id>.png`` holds each method's output and ``outputs/hr/`` the HR
reference, all lossless 16-bit PNG on the data set's [0, 1] scale, listed in ``outputs/index.csv``.
``medsr evaluate`` writes it; ``medsr mos create`` reads it. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsr.fsutil import atomic_write_csv, read_csv
from medsr.io.raster import write_png16

INDEX = Path("outputs") / "index.csv"
COLUMNS = ("image_id", "patient_id", "modality", "method", "file")
#: The columns of metrics.csv that name the image and method; every other column is a score.
SCORE_ID_COLUMNS = ("image_id", "patient_id", "modality", "method")
REFERENCE = "hr"  # the method name of the HR reference


def save_output(
    eval_dir: Path, image_id: str, patient: str, modality: str, method: str, image: np.ndarray
) -> dict:
    """Write one [0, 1] image (H, W) as ``outputs/<method>/<image_id>.png``; returns its index row."""
    relative = Path("outputs") / method / f"{image_id}.png"
    write_png16(eval_dir / relative, image)  # creates the folder; atomic and durable
    return {
        "image_id": image_id,
        "patient_id": patient,
        "modality": modality,
        "method": method,
        "file": relative.as_posix(),
    }


def write_index(eval_dir: Path, rows: list[dict]) -> None:
    """Write ``outputs/index.csv`` last, so an index only exists once every image it lists is written."""
    atomic_write_csv(eval_dir / INDEX, COLUMNS, rows)


def read_index(eval_dir: Path) -> list[dict[str, str]] | None:
    """The rows of ``outputs/index.csv``, or None when the evaluation saved no outputs."""
    path = eval_dir / INDEX
    return read_csv(path) if path.is_file() else None
