"""Download public collections from The Cancer Imaging Archive through its NBIA REST API.

``getSeries`` lists the series of a collection (JSON), ``getImage`` returns one series as a zip of
DICOM files. Each zip is downloaded to a hidden partial folder, verified (zip CRCs, the
``md5hashes.csv`` inside when present, the image count, every file a DICOM of the requested
series), unzipped, and only then renamed to ``OUT/<collection>/<patient>/<study>/<series>/``:
a series folder that exists is complete, so a re-run skips it and continues with the rest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import requests

from medsr.errors import DownloadError
from medsr.fsutil import atomic_write_csv

log = logging.getLogger(__name__)

DEFAULT_API = "https://services.cancerimagingarchive.net/nbia-api/services/v1"
_NON_DICOM_MEMBERS = ("LICENSE", "md5hashes.csv")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
SERIES_COLUMNS = (
    "SeriesInstanceUID",
    "PatientID",
    "StudyInstanceUID",
    "Modality",
    "SeriesDescription",
    "ImageCount",
    "status",
    "folder",
)


def _safe_name(text: str) -> str:
    """A path component from an id (no separators, no leading dots)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).lstrip(".")
    return cleaned or "unknown"


class NbiaClient:
    """Minimal NBIA v1 client with retries and exponential back-off.

    Args:
        base_url: API root, e.g. ``https://services.cancerimagingarchive.net/nbia-api/services/v1``.
        retries: attempts per request (connection errors, time-outs, 429/5xx, truncated bodies).
        backoff: first wait in seconds; doubles after each failed attempt (capped at 60 s).
        timeout: seconds without data before an attempt fails.
    """

    def __init__(
        self, base_url: str = DEFAULT_API, *, retries: int = 5, backoff: float = 1.0, timeout: float = 120.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = max(1, retries)
        self.backoff = backoff
        self.timeout = timeout
        self.session = requests.Session()

    def _wait(self, attempt: int) -> None:
        time.sleep(min(60.0, self.backoff * 2**attempt))

    def _get(self, endpoint: str, params: dict[str, str], *, stream: bool = False) -> requests.Response:
        url = f"{self.base_url}/{endpoint}"
        last = ""
        for attempt in range(self.retries):
            try:
                response = self.session.get(url, params=params, timeout=self.timeout, stream=stream)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}"
            else:
                if response.status_code not in _RETRY_STATUS:
                    if response.status_code >= 400:
                        raise DownloadError(f"{endpoint}: HTTP {response.status_code} from {url}")
                    return response
                last = f"HTTP {response.status_code}"
                response.close()
            log.info("%s failed (%s), attempt %d of %d", endpoint, last, attempt + 1, self.retries)
            if attempt + 1 < self.retries:
                self._wait(attempt)
        raise DownloadError(f"{endpoint}: gave up after {self.retries} attempts ({last}) at {url}")

    def series(self, collection: str, modality: str | None = None) -> list[dict]:
        """Series of a collection (dicts with SeriesInstanceUID, PatientID, StudyInstanceUID, ...)."""
        params = {"Collection": collection, "format": "json"}
        if modality:
            params["Modality"] = modality
        response = self._get("getSeries", params)
        if not response.content.strip():
            return []
        try:
            data = response.json()
        except ValueError:
            raise DownloadError(f"getSeries: the answer for {collection} is not JSON") from None
        if not isinstance(data, list):
            raise DownloadError(f"getSeries: unexpected answer for {collection}")
        return [row for row in data if isinstance(row, dict) and row.get("SeriesInstanceUID")]

    def download_series(self, series_uid: str, target: Path) -> None:
        """Stream one series' zip to ``target``; a body cut short counts as a failed attempt."""
        last = ""
        for attempt in range(self.retries):
            response = self._get("getImage", {"SeriesInstanceUID": series_uid}, stream=True)
            expected = int(response.headers.get("Content-Length", 0) or 0)
            written = 0
            try:
                with response, open(target, "wb") as handle:
                    for block in response.iter_content(1 << 20):
                        handle.write(block)
                        written += len(block)
                if expected and written != expected:
                    last = f"got {written} of {expected} bytes"
                else:
                    return
            except requests.RequestException as exc:
                last = f"download interrupted ({type(exc).__name__})"
            log.info("series %s: %s, attempt %d of %d", series_uid, last, attempt + 1, self.retries)
            if attempt + 1 < self.retries:
                self._wait(attempt)
        raise DownloadError(f"series {series_uid}: gave up after {self.retries} attempts ({last})")


def verify_and_unzip(zip_path: Path, folder: Path, series_uid: str, image_count: int | None) -> int:
    """Check a series zip and unzip its DICOM files flat into ``folder``; returns the file count.

    Raises:
        DownloadError: not a zip, CRC or MD5 mismatch, wrong image count, or a file that is not
            a DICOM of ``series_uid``.
    """
    import pydicom

    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise DownloadError("not a valid zip file (truncated or corrupt download)") from None
    with archive:
        try:
            bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DownloadError(f"corrupt zip ({type(exc).__name__})") from None
        if bad is not None:
            raise DownloadError(f"corrupt zip: CRC mismatch in {bad}")
        names = [n for n in archive.namelist() if not n.endswith("/")]
        md5 = {}
        md5_name = next((n for n in names if Path(n).name == "md5hashes.csv"), None)
        if md5_name:
            for line in archive.read(md5_name).decode("utf-8", "replace").splitlines()[1:]:
                parts = line.strip().split(",")
                if len(parts) >= 2:
                    md5[Path(parts[0]).name] = parts[1].strip().lower()
        dicom_names = [n for n in names if Path(n).name not in _NON_DICOM_MEMBERS]
        if image_count is not None and len(dicom_names) != image_count:
            raise DownloadError(f"zip holds {len(dicom_names)} files, the API lists {image_count}")
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            data = archive.read(name)
            base = _safe_name(Path(name).name)
            if Path(name).name in md5 and hashlib.md5(data).hexdigest() != md5[Path(name).name]:
                raise DownloadError(f"MD5 mismatch for {name}")
            target = folder / base
            target.write_bytes(data)
            if Path(name).name in _NON_DICOM_MEMBERS:
                continue
            try:
                header = pydicom.dcmread(str(target), stop_before_pixels=True)
            except Exception:
                raise DownloadError(f"{name} is not a DICOM file") from None
            if str(header.get("SeriesInstanceUID", "")) != series_uid:
                raise DownloadError(
                    f"{name} belongs to series {header.get('SeriesInstanceUID', '?')}, not {series_uid}"
                )
    return len(dicom_names)


@dataclass
class FetchReport:
    """Outcome of ``fetch_collection``."""

    collection: str
    out: Path
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary_line(self) -> str:
        return (
            f"{self.collection}: {len(self.downloaded)} series downloaded, {len(self.skipped)} already complete, "
            f"{len(self.failed)} failed -> {self.out}"
        )


def series_folder(out: Path, collection: str, row: dict) -> Path:
    """Where a series goes: OUT/<collection>/<patient>/<study>/<series>/."""
    return (
        out
        / _safe_name(collection)
        / _safe_name(str(row.get("PatientID", "")))
        / _safe_name(str(row.get("StudyInstanceUID", "")))
        / _safe_name(str(row["SeriesInstanceUID"]))
    )


def _fetch_series(client: "NbiaClient", row: dict, work: Path, final: Path) -> None:
    """Download one series' zip into the hidden ``work`` folder, verify and unzip it (one fresh
    download when the zip is corrupt), then rename it to ``final``; ``work`` is always removed.

    Raises:
        DownloadError: the series cannot be fetched or verified."""
    uid = str(row["SeriesInstanceUID"])
    count = row.get("ImageCount")
    expected = int(count) if count not in (None, "") else None
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        zip_path = work / "series.zip"
        client.download_series(uid, zip_path)
        try:
            verify_and_unzip(zip_path, work / "files", uid, expected)
        except DownloadError:  # a corrupt zip may be a transient fault: one fresh download before giving up
            client.download_series(uid, zip_path)
            shutil.rmtree(work / "files", ignore_errors=True)
            verify_and_unzip(zip_path, work / "files", uid, expected)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / "files", final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fetch_collection(
    client: NbiaClient,
    collection: str,
    out: str | Path,
    *,
    modality: str | None = None,
    max_series: int | None = None,
    progress: bool = False,
) -> FetchReport:
    """Download (or resume downloading) the series of a collection.

    Series already complete on disk are skipped; a series that fails after its retries is
    reported in ``FetchReport.failed`` and the others continue. ``OUT/<collection>/series.csv``
    lists every series handled, with its status.

    Raises:
        DownloadError: the series list itself cannot be fetched.
    """
    from tqdm import tqdm

    out = Path(out)
    rows = sorted(
        client.series(collection, modality),
        key=lambda r: (str(r.get("PatientID", "")), str(r["SeriesInstanceUID"])),
    )
    if max_series is not None:
        rows = rows[: max(0, max_series)]
    report = FetchReport(collection, out)
    partial_root = out / ".partial"
    table = []
    for row in tqdm(rows, desc=f"{collection} series", unit="series", disable=not progress):
        uid = str(row["SeriesInstanceUID"])
        final = series_folder(out, collection, row)
        status = "complete"
        if final.is_dir():
            report.skipped.append(uid)
        else:
            try:
                _fetch_series(client, row, partial_root / _safe_name(uid), final)
                report.downloaded.append(uid)
            except DownloadError as exc:
                report.failed.append((uid, str(exc)))
                status = f"failed: {exc}"
        table.append(
            {
                **{k: row.get(k, "") for k in SERIES_COLUMNS},
                "status": status,
                "folder": str(final.relative_to(out)),
            }
        )
    if partial_root.is_dir() and not any(partial_root.iterdir()):
        partial_root.rmdir()
    if table:
        atomic_write_csv(out / _safe_name(collection) / "series.csv", SERIES_COLUMNS, table)
    return report
