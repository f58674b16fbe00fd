"""Reading medical images: one reader per format behind one function, ``read_slices``.

Formats are recognised by their content (magic bytes), not by the file extension, so a DICOM
file named ``.png`` is still read as DICOM and a text file named ``.dcm`` is rejected.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from medsr.errors import UnreadableImage
from medsr.io.types import IntensityMapping, Slice, SliceMeta

__all__ = [
    "IntensityMapping",
    "Slice",
    "SliceMeta",
    "UnreadableImage",
    "detect_format",
    "iter_image_files",
    "read_slices",
]

_DICOM_NAME_HINTS = ("", ".dcm", ".dicom", ".ima")
#: Files that travel with image data but are not images; discovery passes over them silently.
_COMPANION_SUFFIXES = (".json", ".csv", ".txt", ".md", ".xml", ".html", ".pdf", ".zip.md5")
_COMPANION_NAMES = ("LICENSE", "README", "md5hashes.csv")


def _nifti_header_ok(head: bytes) -> bool:
    return len(head) >= 348 and (head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] in (b"n+2\x00", b"ni2\x00"))


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
    raise UnreadableImage("not a recognised image format (DICOM, NIfTI, NRRD, PNG or TIFF)")


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
