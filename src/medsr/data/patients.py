"""Who each image belongs to: the unit of the patient-level split.

``--patient-id`` rules (``PatientRule``), applied per file, relative to the source folder it was
found under (the *root*):

Files given directly on the command line share one root, their deepest common folder.

* ``auto`` (default): the id stored with the image (DICOM PatientID, or ``PatientID`` of a JSON
  sidecar), else a BIDS ``sub-XX`` folder in its path, else the folder holding the file (relative
  to the root, so ``a/scan.nii.gz`` and ``b/scan.nii.gz`` are two patients), else, for files
  directly in the root, the file itself;
* ``dicom``: only the id stored with the image; files without one are skipped;
* ``folder``: the folder holding the file, relative to the root (the root's own name for files
  directly in it), whatever the file says;
* ``file``: every file is its own patient (its path relative to the root);
* ``regex:PAT``: the first group (or the whole match) of ``PAT`` searched in the file's path
  relative to the root, written with ``/``; files it does not match are skipped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from medsr.choices import PATIENT_RULE_KINDS
from medsr.io.types import SliceMeta

KINDS = PATIENT_RULE_KINDS
_BIDS_SUBJECT = re.compile(r"sub-[A-Za-z0-9]+")


@dataclass(frozen=True)
class PatientRule:
    """How patients are told apart (see the module docstring)."""

    kind: str = "auto"
    pattern: str = ""

    @classmethod
    def parse(cls, text: str) -> "PatientRule":
        """``auto``, ``dicom``, ``folder``, ``file`` or ``regex:PATTERN`` (a valid Python regex)."""
        kind, sep, pattern = text.partition(":")
        if kind == "regex" and sep:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"patient id regex {pattern!r} is not valid ({exc})") from None
            if not pattern:
                raise ValueError("patient id regex is empty")
            return cls("regex", pattern)
        if kind in KINDS and kind != "regex" and not sep:
            return cls(kind)
        raise ValueError(f"patient id rule must be auto, dicom, folder, file or regex:PATTERN; got {text!r}")

    def __str__(self) -> str:
        return f"regex:{self.pattern}" if self.kind == "regex" else self.kind

    def resolve(self, meta: SliceMeta, path: Path, root: Path) -> tuple[str, str] | None:
        """(patient id, where it came from) for one file's slice, or None when the rule finds none.

        Args:
            meta: the slice's metadata as read (``patient_id`` is the stored id, or empty).
            path: the file; root: the source folder it was found under (a file's own folder when
                the file was given directly).
        """
        relative = _relative(path, root)
        stored = meta.patient_id.strip()
        if self.kind == "dicom" or (self.kind == "auto" and stored):
            return (stored, "dicom" if meta.format == "dicom" else "sidecar") if stored else None
        if self.kind == "auto":
            subject = next((p for p in reversed(relative.parts[:-1]) if _BIDS_SUBJECT.fullmatch(p)), None)
            if subject:
                return subject, "bids"
            return (
                (relative.parent.as_posix(), "folder")
                if len(relative.parts) > 1
                else (relative.as_posix(), "file")
            )
        if self.kind == "folder":
            return (
                relative.parent.as_posix() if len(relative.parts) > 1 else root.name or str(root)
            ), "folder"
        if self.kind == "file":
            return relative.as_posix(), "file"
        match = re.search(self.pattern, relative.as_posix())
        found = (match.group(1) if match.groups() else match.group(0)) if match else None
        return (found, "regex") if found else None  # an empty match is no match

    def missing_reason(self) -> str:
        """Why a file got no patient under this rule (for skipped.csv)."""
        if self.kind == "dicom":
            return "no patient id stored in the file or a sidecar (--patient-id dicom)"
        return f"the path does not match the patient id pattern {self.pattern!r} (or matches it with nothing)"


def _relative(path: Path, root: Path) -> Path:
    """``path`` relative to ``root``, lexically: symbolic links are not followed (a linked file keeps
    the folder it is linked from, as in git-annex and DataLad trees)."""
    relative = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root)))
    return (
        relative
        if relative.parts and relative.parts[0] != ".."
        else Path(os.path.abspath(path)).relative_to("/")
    )


def file_root(files: list[Path]) -> Path:
    """The root of the files given directly on the command line: their deepest common folder, so
    that ``a/scan.nii.gz b/scan.nii.gz`` (or a shell glob ``data/*/*.png``) are told apart by folder."""
    folders = [os.path.abspath(f.parent) for f in files]
    return Path(os.path.commonpath(folders)) if folders else Path(".")
