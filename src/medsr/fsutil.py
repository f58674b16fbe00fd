"""File-system helpers: every output is written to a temporary name, then renamed into place.

``atomic_path`` is the one implementation of that pattern; every writer in medsr that replaces a
file (bytes, CSV, JSON, PNG, DICOM, NIfTI, NRRD, checkpoints, figures) goes through it.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

#: Compression suffixes that belong to the format suffix before them (``scan.nii.gz``).
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")


def temporary_name(target: Path) -> Path:
    """The hidden temporary path ``atomic_path`` writes before renaming onto ``target``.

    ``dir/.NAME.PID-THREAD.tmpEXT``: in ``target``'s folder (so the rename stays on one file
    system), unique per process and thread, and ending in ``target``'s own extension (``.png``,
    ``.nii.gz``) so that libraries choosing the encoder by extension (OpenCV, nibabel, matplotlib)
    write the right format.
    """
    suffix = target.suffix
    if suffix.lower() in _COMPRESSION_SUFFIXES and len(target.suffixes) > 1:
        suffix = "".join(target.suffixes[-2:])
    return target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp{suffix}")


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable; a no-op where folders cannot be opened (Windows)
    or the file system does not sync folders."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(descriptor)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Write a file so that readers see the old ``target`` or the whole new one, never a part.

    Yields a temporary path (see ``temporary_name``) for the block to write; the target's
    folder is created if needed. When the block succeeds the file is fsynced, renamed over
    ``target`` and the folder fsynced, so the new file survives a power cut. When the block
    (or the rename) raises, the temporary file is removed and ``target`` is left as it was.

    Raises:
        FileNotFoundError: the block finished without writing the temporary file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(target)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8, atomically (see ``atomic_path``)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: object) -> None:
    """Write ``data`` as indented JSON with sorted keys, atomically (see ``atomic_path``)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> None:
    """Write rows (dicts keyed by ``columns``; missing keys are empty) as CSV, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def is_within(path: Path, folder: Path) -> bool:
    """True if ``path`` is ``folder`` or lies under it (both resolved)."""
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
