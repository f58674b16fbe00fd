"""Writing a super-resolved image as a derived DICOM object beside its source.

The new object keeps the patient and study, gets a new SOP Instance UID and (per source series)
a new Series Instance UID, ImageType DERIVED\\SECONDARY, Rows/Columns times the scale, pixel spacing
divided by it, an Image Position moved to the centre of the new first pixel (so the images overlay
the source exactly), stored values mapped back through Rescale Slope/Intercept to the source's
bit depth, and a DerivationDescription naming the model. Whatever the source's transfer syntax
(big endian, implicit VR, JPEG, JPEG-LS, JPEG 2000, RLE, deflated), the object is written
uncompressed in Explicit VR Little Endian.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from medsr import __version__
from medsr.fsutil import atomic_path
from medsr.io.dicom import frame_rescale, read_dicom_header, stored_range

_DROP = (
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "IconImageSequence",
    "LossyImageCompressionRatio",
    "PixelPaddingRangeLimit",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
)


def stored_values(physical: np.ndarray, ds: Dataset, frame: int = 0) -> np.ndarray:
    """Physical values (H, W) (HU, ...) -> stored integers (H, W) of ``ds``'s type (uint8/int8 for
    8-bit, else uint16/int16 by PixelRepresentation), ``rint((physical - intercept) / slope)``
    clipped to the range BitsStored allows."""
    slope, intercept = frame_rescale(ds, frame)
    stored = np.array(physical, dtype=np.float32 if np.asarray(physical).dtype == np.float32 else np.float64)
    stored -= intercept
    stored /= slope
    np.rint(stored, out=stored)
    low, high = stored_range(ds)
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
    position = np.asarray(ds.ImagePositionPatient, float) + shift * (
        spacing[1] * row_dir + spacing[0] * col_dir
    )
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]


def _scaled_spacing(values: Iterable, scale: int) -> list[str]:
    row, col = (float(v) for v in list(values)[:2])
    return [f"{row / scale:.6g}", f"{col / scale:.6g}"]


def _scale_geometry(ds: Dataset, source: Dataset, scale: int) -> None:
    """Pixel spacing (top level and functional groups) divided by ``scale``, position shifted."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if source.get(keyword):
            setattr(ds, keyword, _scaled_spacing(source.get(keyword), scale))
    spacing = [float(v) for v in (source.get("PixelSpacing") or source.get("ImagerPixelSpacing") or [])[:2]]
    if len(spacing) == 2:
        _shift_position(ds, (spacing[0], spacing[1]), scale)
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(groups, []):
            for measures in item.get("PixelMeasuresSequence", []):
                if measures.get("PixelSpacing"):
                    measures.PixelSpacing = _scaled_spacing(measures.PixelSpacing, scale)


def _file_meta(ds: Dataset, source: Dataset) -> FileMetaDataset:
    """File meta for an uncompressed Explicit VR Little Endian file written by pydicom."""
    meta = (
        copy.deepcopy(source.file_meta)
        if getattr(source, "file_meta", None) is not None
        else FileMetaDataset()
    )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if "ImplementationVersionName" in meta:
        del meta.ImplementationVersionName
    return meta


def _set_pixels(ds: Dataset, source: Dataset, frames: np.ndarray) -> None:
    """Native little-endian pixel data, Rows/Columns/NumberOfFrames/BitsAllocated to match."""
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    if frames.shape[0] > 1 or "NumberOfFrames" in source:
        ds.NumberOfFrames = int(frames.shape[0])
    ds.BitsAllocated = 8 if frames.dtype.itemsize == 1 else 16
    frames = frames.astype(frames.dtype.newbyteorder("<"), copy=False)
    ds.PixelData = (
        frames[0] if frames.shape[0] == 1 and "NumberOfFrames" not in source else frames
    ).tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"


def derived_dataset(
    source: Dataset, frames: np.ndarray, *, scale: int, series_uid: str, model_name: str
) -> Dataset:
    """A new dataset for ``frames`` (F, H*scale, W*scale) of stored values, derived from ``source``
    (a header, with or without pixel data; it is not modified)."""
    ds = copy.deepcopy(source)
    for keyword in _DROP:
        if keyword in ds:
            delattr(ds, keyword)
    for tag in [t for t in ds.keys() if 0x6000 <= t.group <= 0x60FF or t == 0x7FE00010]:  # overlays no longer
        del ds[tag]  # fit the grid; the old pixels are replaced
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = _file_meta(ds, source)
    ds.SeriesInstanceUID = series_uid
    image_type = list(source.get("ImageType", ["ORIGINAL", "PRIMARY"]))
    ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    ds.DerivationDescription = f"Super-resolved x{scale} by medsr {__version__}, model {model_name}"[:1024]
    ds.SeriesDescription = (f"{source.get('SeriesDescription', '')} SR x{scale}".strip())[:64]
    if source.get("SeriesNumber") not in (None, ""):
        ds.SeriesNumber = int(source.SeriesNumber) + 1000
    _scale_geometry(ds, source, scale)
    _set_pixels(ds, source, frames)
    return ds


def write_dataset(ds: Dataset, path: str | Path) -> None:
    """Save ``ds`` atomically (``fsutil.atomic_path``) in the transfer syntax of its file meta;
    ``pydicom.dcmwrite`` re-encodes elements read from a big-endian or implicit-VR source."""
    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)


def write_dicom_like(
    source: str | Path,
    frames: Iterable[np.ndarray],
    target: str | Path,
    *,
    scale: int,
    model_name: str = "",
    series_uid: str | None = None,
    force: bool = False,
) -> None:
    """Write super-resolved ``frames`` of the DICOM file ``source`` as a derived object ``target``.

    Args:
        source: the DICOM file the frames come from (its header is read again; pixels are not).
        frames: one (H*scale, W*scale) array per frame of ``read_slices(source)``, in its physical
            units (HU for CT, stored units otherwise); consumed one at a time.
        scale: the super-resolution factor.
        model_name: named in DerivationDescription.
        series_uid: Series Instance UID of the derived series (shared by every file of one source
            series); a new one when None.
        force: read a file without the DICM preamble (``detect_format`` says ``dicom-nopreamble``).

    Raises:
        UnreadableImage: the source header cannot be read.
        ValueError: the frames' shape does not match the source times ``scale``.
    """
    header = read_dicom_header(source, force=force)
    expected = (int(header.Rows) * scale, int(header.Columns) * scale)
    stored = [stored_values(values, header, index) for index, values in enumerate(frames)]
    wrong = [item.shape for item in stored if item.shape != expected]
    if not stored or wrong:
        raise ValueError(
            f"expected frames of shape {expected} (source x{scale}), got {wrong[0] if wrong else 'none'}"
        )
    derived = derived_dataset(
        header, np.stack(stored), scale=scale, series_uid=series_uid or generate_uid(), model_name=model_name
    )
    write_dataset(derived, target)
