"""BIDS-style JSON sidecars: ``scan.json`` beside ``scan.nii.gz`` carries what the format lacks.

Recognised keys: ``Modality``, ``PatientID``, ``SeriesDescription``, ``SeriesInstanceUID``,
``Source``, ``License``. Files without a patient id get one from ``medsr prepare``'s
``--patient-id`` rule (``medsr.data.patients``): a BIDS ``sub-XX`` folder, the folder, or the file.
"""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".png", ".tif", ".tiff", ".dcm")


def image_stem(path: Path) -> str:
    """File name without its image suffix (``brain.nii.gz`` -> ``brain``)."""
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def sidecar_path(path: Path) -> Path:
    return path.with_name(image_stem(path) + ".json")


def read_sidecar(path: Path) -> dict[str, str]:
    """Sidecar values for an image file (empty dict when there is none or it is not valid JSON)."""
    candidate = sidecar_path(path)
    if not candidate.is_file():
        return {}
    try:
        data = json.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return (
        {str(k): str(v) for k, v in data.items() if isinstance(v, (str, int, float))}
        if isinstance(data, dict)
        else {}
    )
