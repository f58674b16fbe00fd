"""Writing a super-resolved image as a derived DICOM object beside its source.

The new object keeps the patient and study, gets a new SOP Instance UID and (per source series)
a new Series Instance UID, ImageType DERIVED\\SECONDARY, Rows/Columns times the scale, pixel spacing
divided by it, an Image Position moved to the centre of the new first pixel (so the images overlay
the source exactly), stored values mapped back through Rescale Slope/Intercept to the source's
bit depth, and a DerivationDescription naming the model. Pixel data are written uncompressed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsr import __version__

_DROP = (
    "SmallestImagePixelValue", "LargestImagePixelValue", "IconImageSequence", "LossyImageCompressionRatio",
    "PixelPaddingRangeLimit",
)


def stored_values(physical: np.ndarray, ds: Dataset, frame: int = 0) -> np.ndarray:
    """Physical values (HU, ...) -> stored integers of ``ds``'s type, clipped to BitsStored."""
    from medsr.io.dicom import _rescale, _stored_range

    slope, intercept = _rescale(ds, frame)
    stored = np.array(physical, dtype=np.float32 if np.asarray(physical).dtype == np.float32 else np.float64)
    stored -= intercept
    stored /= slope
    np.rint(stored, out=stored)
    low, high = _stored_range(ds)
    dtype = np.int16 if int(ds.get("PixelRepresentation", 0) or 0) == 1 else np.uint16
    if int(ds.get("BitsAllocated", 16)) == 8:
        dtype = np.int8 if dtype == np.int16 else np.uint8
    return np.clip(stored, low, high, out=stored).astype(dtype)


def _shift_position(ds: Dataset, spacing: tuple[float, float], scale: int) -> None:
    """Move Image Position (Patient) from the centre of the old first pixel to the new one's."""
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        return
    row_dir = np.asarray(ds.ImageOrientationPatient[:3], float)  # direction along a row (columns increase)
    col_dir = np.asarray(ds.ImageOrientationPatient[3:], float)  # direction down a column (rows increase)
    shift = -(1.0 - 1.0 / scale) / 2.0
    position = np.asarray(ds.ImagePositionPatient, float) + shift * (spacing[1] * row_dir + spacing[0] * col_dir)
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]


def derived_dataset(source: Dataset, frames: np.ndarray, *, scale: int, series_uid: str, model_name: str) -> Dataset:
    """A new dataset for ``frames`` (F, H*scale, W*scale) of stored values, derived from ``source``."""
    ds = source.copy()
    for keyword in _DROP:
        if keyword in ds:
            delattr(ds, keyword)
    for tag in [t for t in ds.keys() if 0x6000 <= t.group <= 0x60FF]:  # overlays no longer fit the grid
        del ds[tag]
    ds.file_meta = source.file_meta.copy() if hasattr(source, "file_meta") else pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    image_type = list(source.get("ImageType", ["ORIGINAL", "PRIMARY"]))
    ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    ds.DerivationDescription = f"Super-resolved x{scale} by medsr {__version__}, model {model_name}"[:1024]
    ds.SeriesDescription = (f"{source.get('SeriesDescription', '')} SR x{scale}".strip())[:64]
    if source.get("SeriesNumber") not in (None, ""):
        ds.SeriesNumber = int(source.SeriesNumber) + 1000
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if source.get(keyword):
            row, col = (float(v) for v in source.get(keyword)[:2])
            setattr(ds, keyword, [f"{row / scale:.6g}", f"{col / scale:.6g}"])
    spacing = [float(v) for v in (source.get("PixelSpacing") or source.get("ImagerPixelSpacing") or [])[:2]]
    if len(spacing) == 2:
        _shift_position(ds, (spacing[0], spacing[1]), scale)
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(groups, []):
            for measures in item.get("PixelMeasuresSequence", []):
                if measures.get("PixelSpacing"):
                    row, col = (float(v) for v in measures.PixelSpacing[:2])
                    measures.PixelSpacing = [f"{row / scale:.6g}", f"{col / scale:.6g}"]
    if frames.shape[0] > 1 or "NumberOfFrames" in source:
        ds.NumberOfFrames = int(frames.shape[0])
    ds.BitsAllocated = 8 if frames.dtype.itemsize == 1 else 16
    ds.PixelData = (frames[0] if frames.shape[0] == 1 and "NumberOfFrames" not in source else frames).tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    return ds


def write_dataset(ds: Dataset, path: str | Path) -> None:
    """Save atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
