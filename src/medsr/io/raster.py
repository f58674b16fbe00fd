"""PNG/TIFF reader (OpenCV: 8- and 16-bit, multi-page TIFF), the lossless 16-bit PNG writer, and
the writer of super-resolved PNG/TIFF."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from medsr.errors import UnreadableImage
from medsr.fsutil import atomic_path
from medsr.io.sidecar import read_sidecar
from medsr.io.types import Slice, SliceMeta

PNG16_MAX = 65535


def _to_grayscale(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] in (3, 4):
        colour = image[..., :3]
        if np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2]):
            return np.ascontiguousarray(colour[..., 0])  # grayscale saved as RGB
        raise UnreadableImage("colour image (RGB with differing channels)")
    raise UnreadableImage(f"unexpected image shape {image.shape}")


def read_raster(path: str | Path) -> list[Slice]:
    """Read a PNG or (multi-page) TIFF into float32 slices in stored units.

    Integer images carry their dtype's full range as ``meta.fixed_range`` (0-255, 0-65535), which
    the default intensity mapping uses, so 8/16-bit values map to [0, 1] and back exactly.
    """
    path = Path(path)
    ok, pages = cv2.imreadmulti(str(path), flags=cv2.IMREAD_UNCHANGED)
    if not ok or not pages:
        single = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if single is None:
            raise UnreadableImage("cannot decode image (corrupt or unsupported PNG/TIFF)")
        pages = [single]
    sidecar = read_sidecar(path)
    slices = []
    for index, page in enumerate(pages):
        gray = _to_grayscale(page)
        fixed = (0.0, float(np.iinfo(gray.dtype).max)) if gray.dtype in (np.uint8, np.uint16) else None
        meta = SliceMeta(
            source=str(path),
            format="raster",
            frame=index,
            modality=sidecar.get("Modality", "OT"),
            patient_id=sidecar.get("PatientID", ""),  # else prepare's --patient-id rule decides
            series_uid=sidecar.get("SeriesInstanceUID", ""),
            series_description=sidecar.get("SeriesDescription", ""),
            stored_dtype=str(gray.dtype),
            fixed_range=fixed,
        )
        slices.append(Slice(gray.astype(np.float32), meta))
    return slices


def quantize_png16(unit: np.ndarray) -> np.ndarray:
    """[0, 1] float (H, W) -> uint16 (H, W), ``round(unit * 65535)``."""
    unit = np.asarray(unit)
    if unit.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {unit.shape}")
    if not np.all(np.isfinite(unit)):
        raise ValueError("image contains NaN/Inf")
    return np.rint(np.clip(unit, 0.0, 1.0) * PNG16_MAX).astype(np.uint16)


def write_png16(path: str | Path, unit: np.ndarray, *, compression: int = 1) -> None:
    """Write a [0, 1] image (H, W) as a lossless 16-bit grayscale PNG, atomically (``fsutil.atomic_path``)."""
    path = Path(path)
    ok, encoded = cv2.imencode(".png", quantize_png16(unit), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def write_raster_like(pages: Iterable[np.ndarray], target: str | Path) -> None:
    """Write super-resolved pages, each (H, W) in [0, 1], as 16-bit grayscale (``round(v * 65535)``).

    A ``.tif``/``.tiff`` target becomes a TIFF holding every page (multi-page when there are
    several); any other target a PNG of the first page. Written atomically.

    Raises:
        ValueError: no page, or a page that is not a finite 2-D image.
        OSError: OpenCV cannot encode the image.
    """
    target = Path(target)
    images = [quantize_png16(page) for page in pages]
    if not images:
        raise ValueError("no page to write")
    tiff = target.suffix.lower() in (".tif", ".tiff")
    with atomic_path(target) as tmp:
        if tiff and len(images) > 1:
            ok = cv2.imwritemulti(str(tmp), images)  # the temporary name keeps the .tif extension
        else:
            ok, encoded = cv2.imencode(".tif" if tiff else ".png", images[0])
            if ok:
                tmp.write_bytes(encoded.tobytes())
        if not ok:
            raise OSError(f"cannot write {target}")


def read_png16(path: str | Path) -> np.ndarray:
    """Read a 16-bit PNG written by ``write_png16`` -> float32 (H, W) in [0, 1]."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint16 or image.ndim != 2:
        raise UnreadableImage("not a 16-bit grayscale PNG")
    return image.astype(np.float32) / PNG16_MAX
