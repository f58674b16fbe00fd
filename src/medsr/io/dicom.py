"""DICOM reader (pydicom): single- and multi-frame, compressed transfer syntaxes, CT in HU.

Compressed pixel data (JPEG baseline/lossless, JPEG-LS, JPEG 2000, RLE) is decoded by the
pylibjpeg plugins that pydicom picks up automatically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import MediaStorageDirectoryStorage

from medsr.errors import UnreadableImage
from medsr.io.types import Slice, SliceMeta

#: Modalities whose objects carry no diagnostic image to super-resolve.
NON_IMAGE_MODALITIES = frozenset(
    {"RTDOSE", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "SEG", "PR", "KO", "REG", "DOC", "RWV", "ECG", "AU"}
)
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def read_dicom_header(path: str | Path, *, force: bool = False) -> Dataset:
    """Parse a DICOM file without pixels (everything before the pixel data, and the file meta);
    raises ``UnreadableImage`` with the reason."""
    return _dcmread(path, force=force, stop_before_pixels=True)


def _dcmread(path: str | Path, *, force: bool, stop_before_pixels: bool = False) -> Dataset:
    try:
        return pydicom.dcmread(str(path), force=force, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise UnreadableImage("not a DICOM file (no DICM preamble)") from None
    except Exception as exc:  # pydicom raises many types on truncated or corrupt headers
        raise UnreadableImage(f"corrupt DICOM header ({type(exc).__name__}: {_short(exc)})") from None


def _short(exc: BaseException, limit: int = 120) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_is_grayscale_image(ds: Dataset) -> None:
    if ds.get("SOPClassUID") == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        raise UnreadableImage("DICOMDIR (a directory index, no pixels)")
    modality = str(ds.get("Modality", "") or "")
    if modality in NON_IMAGE_MODALITIES:
        raise UnreadableImage(f"not an image (modality {modality})")
    if not any(tag in ds for tag in _PIXEL_TAGS):
        kind = modality or getattr(ds.get("SOPClassUID"), "name", "") or "unknown SOP class"
        raise UnreadableImage(f"no pixel data ({kind})")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnreadableImage(f"colour image ({photometric}, {samples} samples per pixel)")


def _functional_group_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The item of a functional-group ``sequence`` for ``frame`` (per-frame first, then shared)."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and index < len(items):
            found = items[index].get(sequence)
            if found:
                return found[0]
    return None


def frame_rescale(ds: Dataset, frame: int) -> tuple[float, float]:
    """(Rescale Slope, Rescale Intercept) of ``frame``: its functional group's, else the dataset's,
    else (1, 0); ``physical = stored * slope + intercept``."""
    item = _functional_group_item(ds, frame, "PixelValueTransformationSequence")
    source = item if item is not None and "RescaleSlope" in item else ds
    slope = float(source.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(source.get("RescaleIntercept", 0.0) or 0.0)
    return slope, intercept


def _pixel_spacing(ds: Dataset, frame: int) -> tuple[float, float] | None:
    item = _functional_group_item(ds, frame, "PixelMeasuresSequence")
    for source, tag in ((item, "PixelSpacing"), (ds, "PixelSpacing"), (ds, "ImagerPixelSpacing")):
        if source is not None and source.get(tag):
            row, col = (float(v) for v in source.get(tag)[:2])
            if row > 0 and col > 0:
                return row, col
    return None


def _position(ds: Dataset, frame: int) -> float | None:
    """Slice position along the slice normal in mm (for ordering a series), if known."""
    plane = _functional_group_item(ds, frame, "PlanePositionSequence")
    orient = _functional_group_item(ds, frame, "PlaneOrientationSequence")
    ipp = (plane or ds).get("ImagePositionPatient")
    iop = (orient or ds).get("ImageOrientationPatient")
    if ipp is not None and iop is not None and len(ipp) == 3 and len(iop) == 6:
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        return float(np.dot(normal, np.asarray(ipp, float)))
    if ds.get("SliceLocation") is not None:
        return float(ds.SliceLocation)
    return None


def stored_range(ds: Dataset) -> tuple[float, float]:
    """(lowest, highest) stored value that BitsStored and PixelRepresentation allow."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def read_dicom(path: str | Path, *, force: bool = False) -> list[Slice]:
    """Read a DICOM file into one slice per frame.

    Returns:
        Slices with ``pixels`` float32 (H, W) in physical units: HU for CT
        (``stored * RescaleSlope + RescaleIntercept``), stored values otherwise. MONOCHROME1
        is kept as stored and flagged in ``meta.photometric`` (the intensity mapping inverts it).

    Raises:
        UnreadableImage: not DICOM, DICOMDIR, no pixels, non-image modality, colour, truncated
            or undecodable pixel data.
    """
    ds = _dcmread(path, force=force)
    if force and not any(tag in ds for tag in ("SOPClassUID", "Modality", *_PIXEL_TAGS)):
        raise UnreadableImage("not a DICOM file (no DICM preamble, no DICOM elements)")
    _check_is_grayscale_image(ds)
    try:
        stored = ds.pixel_array
    except Exception as exc:
        raise UnreadableImage(f"pixel data cannot be decoded ({type(exc).__name__}: {_short(exc)})") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1 and stored.ndim == 2:
        stored = stored[np.newaxis]
    if stored.ndim != 3:
        raise UnreadableImage(f"unexpected pixel array shape {stored.shape}")
    modality = str(ds.get("Modality", "OT") or "OT")
    rescale_type = str(ds.get("RescaleType", "") or "")
    unit = "HU" if modality == "CT" and rescale_type in ("", "HU") else "stored"
    lo, hi = stored_range(ds)
    slices = []
    for index in range(stored.shape[0]):
        slope, intercept = frame_rescale(ds, index)
        pixels = stored[index].astype(np.float32)
        if slope != 1.0 or intercept != 0.0:
            pixels *= np.float32(slope)
            pixels += np.float32(intercept)
        physical_range = sorted((lo * slope + intercept, hi * slope + intercept))
        meta = SliceMeta(
            source=str(path),
            format="dicom",
            frame=index,
            modality=modality,
            patient_id=str(ds.get("PatientID", "") or ""),
            study_uid=str(ds.get("StudyInstanceUID", "") or ""),
            series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
            series_description=str(ds.get("SeriesDescription", "") or ""),
            pixel_spacing=_pixel_spacing(ds, index),
            position=_position(ds, index),
            rescale_slope=slope,
            rescale_intercept=intercept,
            unit=unit,
            stored_dtype=str(stored.dtype),
            photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
            fixed_range=(physical_range[0], physical_range[1]),
            extra={
                "transfer_syntax": str(getattr(ds.file_meta, "TransferSyntaxUID", ""))
                if hasattr(ds, "file_meta")
                else ""
            },
        )
        slices.append(Slice(pixels=pixels, meta=meta))
    return slices
