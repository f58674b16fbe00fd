"""Reading and writing medical images: one module per format behind three functions.

``read_slices`` reads any supported file into 2-D slices, ``read_volume`` reads a NIfTI/NRRD
volume in its own voxel order, and ``write_like`` writes a super-resolved result in the format
of its source (derived DICOM, NIfTI, NRRD, 16-bit PNG/TIFF) so that it overlays the source.
Formats are recognised by their content (magic bytes), not by the file extension, so a DICOM
file named ``.png`` is still read as DICOM and a text file named ``.dcm`` is rejected.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from medsr.errors import UnreadableImage
from medsr.io.types import IntensityMapping, Slice, SliceMeta, Volume

__all__ = [
    "IntensityMapping",
    "Slice",
    "SliceMeta",
    "UnreadableImage",
    "Volume",
    "detect_format",
    "iter_image_files",
    "read_slices",
    "read_volume",
    "write_like",
]
_UNKNOWN_FORMAT = "not a recognised image format (DICOM, NIfTI, NRRD, PNG or TIFF)"

_DICOM_NAME_HINTS = ("", ".dcm", ".dicom", ".ima")
#: Files that travel with image data but are not images; discovery passes over them silently.
_COMPANION_SUFFIXES = (".json", ".csv", ".txt", ".md", ".xml", ".html", ".pdf", ".zip.md5")
_COMPANION_NAMES = ("LICENSE", "README", "md5hashes.csv")


def _nifti_header_ok(head: bytes) -> bool:
    return len(head) >= 348 and (
        head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] in (b"n+2\x00", b"ni2\x00")
    )


def detect_format(path: str | Path) -> str | None:
    """``dicom``, ``nifti``, ``nrrd``, ``raster`` (PNG/TIFF) or None, from the file's content.

    Raises:
        UnreadableImage: the file is empty or cannot be opened.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError as exc:
        raise UnreadableImage(f"cannot open file ({exc.strerror or exc})") from None
    if not head:
        raise UnreadableImage("empty file (0 bytes)")
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n") or head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "raster"
    if head.startswith(b"NRRD000"):
        return "nrrd"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(348)
        except (OSError, EOFError):
            return None
        return "nifti" if _nifti_header_ok(inner) else None
    if _nifti_header_ok(head):
        return "nifti"
    if path.suffix.lower() in _DICOM_NAME_HINTS or path.name.upper() == "DICOMDIR":
        return "dicom-nopreamble"
    return None


def read_slices(path: str | Path, *, axes: Iterable[str] = ("axial",)) -> list[Slice]:
    """Read any supported image file into float32 grayscale slices in physical units.

    Args:
        path: a DICOM, NIfTI (.nii/.nii.gz), NRRD, PNG or TIFF file.
        axes: for volumes, the orientations to slice along (``axial``, ``coronal``, ``sagittal``).

    Returns:
        A list of ``Slice`` (pixels (H, W) float32, meta). Multi-frame DICOM and volumes give
        one slice per frame; the caller maps values to [0, 1] with an ``IntensityMapping``.

    Raises:
        UnreadableImage: with a one-line reason (unknown format, corrupt, colour, no pixels, ...).
    """
    from medsr.io import dicom, nifti, nrrd, raster

    path = Path(path)
    kind = detect_format(path)
    if kind == "dicom":
        return dicom.read_dicom(path)
    if kind == "dicom-nopreamble":
        return dicom.read_dicom(path, force=True)
    if kind == "nifti":
        return nifti.read_nifti(path, axes=axes)
    if kind == "nrrd":
        return nrrd.read_nrrd(path, axes=axes)
    if kind == "raster":
        return raster.read_raster(path)
    raise UnreadableImage(_UNKNOWN_FORMAT)


def read_volume(path: str | Path) -> Volume:
    """Read a NIfTI or NRRD file as one volume in its own voxel order (see ``Volume``), the
    form ``write_like`` takes back; ``read_slices`` instead reorients and cuts it.

    Raises:
        UnreadableImage: not a NIfTI/NRRD file, unreadable, of unsupported dimensions, or not finite.
    """
    from medsr.io import nifti, nrrd

    kind = detect_format(path)
    if kind == "nifti":
        return nifti.read_nifti_volume(path)
    if kind == "nrrd":
        return nrrd.read_nrrd_volume(path)
    raise UnreadableImage(f"not a NIfTI or NRRD volume ({kind or 'unknown format'})")


def write_like(
    source: str | Path,
    images: np.ndarray | Iterable[np.ndarray],
    target: str | Path,
    *,
    scale: int,
    model_name: str = "",
    series_uid: str | None = None,
) -> None:
    """Write super-resolved ``images`` of ``source`` to ``target`` in ``source``'s format, so that
    they overlay it in a viewer; written atomically (the old ``target`` survives a failure).

    Args:
        source: the file the images were read from; its format (by content) picks the writer,
            which reads its header again (DICOM tags, NIfTI affine, NRRD space).
        images: by the source's format:
            DICOM: one (H*scale, W*scale) array per frame of ``read_slices(source)``, in its
            physical units (HU for CT); consumed one at a time. Written as a derived object,
            uncompressed Explicit VR Little Endian, in the source's bit depth.
            NIfTI/NRRD: one (X*scale, Y*scale, ...) array of physical values in the voxel order of
            ``read_volume(source)``; written in the source's data type.
            PNG/TIFF: one (H*scale, W*scale) array in [0, 1] per page; written 16-bit.
        target: the output file.
        scale: the super-resolution factor.
        model_name: named in a derived DICOM's DerivationDescription.
        series_uid: a derived DICOM's Series Instance UID (one per source series; new if None).

    Raises:
        UnreadableImage: the source cannot be read (again) or has no writer.
        ValueError: the images' shape does not match the source times ``scale``.
        OSError: the target cannot be written.
    """
    from medsr.io import dicom_write, nifti, nrrd, raster
    from medsr.io.volume import in_plane_scales

    kind = detect_format(source)
    if kind in ("dicom", "dicom-nopreamble"):
        dicom_write.write_dicom_like(
            source,
            images,
            target,
            scale=scale,
            model_name=model_name,
            series_uid=series_uid,
            force=kind == "dicom-nopreamble",
        )
    elif kind == "nifti":
        nifti.write_nifti_like(source, np.asarray(images), target, scales=in_plane_scales(scale))
    elif kind == "nrrd":
        nrrd.write_nrrd_like(source, np.asarray(images), target, scales=in_plane_scales(scale))
    elif kind == "raster":
        raster.write_raster_like(images, target)
    else:
        raise UnreadableImage(_UNKNOWN_FORMAT)


def _is_companion(path: Path) -> bool:
    name = path.name
    return (
        name.startswith(".")
        or any(name.lower().endswith(s) for s in _COMPANION_SUFFIXES)
        or any(name.upper().startswith(n.upper()) for n in _COMPANION_NAMES)
    ) and name.upper() != "DICOMDIR"


def _walk(folder: Path) -> Iterator[Path]:
    """Every file under ``folder``, following links to folders (each real folder once, so a link
    cycle ends), not entering hidden folders; broken links are yielded (and fail to read later)."""
    seen: set[str] = set()
    for current, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            yield Path(current) / name


def iter_image_files(sources: Iterable[str | Path]) -> Iterator[Path]:
    """Every candidate image file under ``sources`` (files or folders, walked recursively, links to
    folders followed), in sorted order; hidden files and companions (JSON sidecars, CSV, text,
    licences) are passed over.

    Raises:
        FileNotFoundError: a source does not exist.
    """
    for source in sources:
        source = Path(source)
        if source.is_file():
            yield source
        elif source.is_dir():
            for path in sorted(_walk(source)):
                if not _is_companion(path):
                    yield path
        else:
            raise FileNotFoundError(f"{source}: no such file or folder")
