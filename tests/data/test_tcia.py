"""TCIA download against a local stand-in NBIA v1 server that serves real DICOM series as zips,
including a series whose zip is always broken and one that fails with a server error and then a
connection cut mid-download before it succeeds."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pydicom
import pytest

from conftest import write_ct_series
from medsr.cli import main
from medsr.data.tcia import NbiaClient, fetch_collection
from medsr.errors import DownloadError
from medsr.fsutil import read_csv
from servers import serve

API = "/nbia-api/services/v1"
SERIES = [
    {
        "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.1",
        "PatientID": "C3L-00001",
        "StudyInstanceUID": "1.2.3.1",
        "Modality": "MR",
        "ImageCount": 3,
    },
    {
        "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.2",
        "PatientID": "C3L-00002",
        "StudyInstanceUID": "1.2.3.2",
        "Modality": "MR",
        "ImageCount": 2,
    },
    {
        "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.3",
        "PatientID": "C3L-00003",
        "StudyInstanceUID": "1.2.3.3",
        "Modality": "MR",
        "ImageCount": 2,
    },
    {
        "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.4",
        "PatientID": "C3L-00004",
        "StudyInstanceUID": "1.2.3.4",
        "Modality": "CT",
        "ImageCount": 1,
    },
]
GOOD, FLAKY, BROKEN, CT = (s["SeriesInstanceUID"] for s in SERIES)


def _series_zip(folder: Path, row: dict) -> bytes:
    files = write_ct_series(
        folder / row["SeriesInstanceUID"],
        row["ImageCount"],
        patient=row["PatientID"],
        series_uid=row["SeriesInstanceUID"],
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        lines = ["filename,md5hash"]
        for index, path in enumerate(files):
            data = path.read_bytes()
            archive.writestr(f"1-{index + 1:02d}.dcm", data)
            lines.append(f"1-{index + 1:02d}.dcm,{hashlib.md5(data).hexdigest()}")
        archive.writestr("md5hashes.csv", "\n".join(lines))
        archive.writestr("LICENSE", "Creative Commons Attribution 3.0")
    return buffer.getvalue()


@pytest.fixture
def nbia(tmp_path):
    zips = {row["SeriesInstanceUID"]: _series_zip(tmp_path / "server", row) for row in SERIES}
    broken = bytearray(zips[BROKEN])
    broken[len(broken) // 3 : len(broken) // 3 + 64] = b"\x00" * 64  # corrupt compressed data -> CRC error
    zips[BROKEN] = bytes(broken)

    def route(path, query, hits):
        if path == f"{API}/getSeries":
            rows = [r for r in SERIES if r["Modality"] == query.get("Modality", [r["Modality"]])[0]]
            assert query["Collection"] == ["CPTAC-GBM"]
            return 200, {"Content-Type": "application/json"}, json.dumps(rows).encode()
        if path == f"{API}/getImage":
            uid = query["SeriesInstanceUID"][0]
            attempt = sum(
                n for (p, q), n in hits.items() if p == path and dict(q)["SeriesInstanceUID"] == (uid,)
            )
            body = zips[uid]
            if uid == FLAKY and attempt == 1:
                return 503, {}, b"busy"
            if uid == FLAKY and attempt == 2:

                def cut_short(handler):  # promise the whole zip, send a third, drop the connection
                    handler.send_response(200)
                    handler.send_header("Content-Length", str(len(body)))
                    handler.end_headers()
                    handler.wfile.write(body[: len(body) // 3])
                    handler.wfile.flush()
                    handler.close_connection = True

                return cut_short
            return 200, {"Content-Type": "application/zip"}, body
        return 404, {}, b""

    with serve(route) as (url, hits):
        yield url + API, hits


def _image_requests(hits, uid):
    return sum(
        n for (p, q), n in hits.items() if p.endswith("getImage") and dict(q)["SeriesInstanceUID"] == (uid,)
    )


def test_download_verifies_retries_and_reports_failures(nbia, tmp_path):
    url, hits = nbia
    out = tmp_path / "tcia"
    report = fetch_collection(NbiaClient(url, retries=4, backoff=0.01), "CPTAC-GBM", out, modality="MR")
    assert report.downloaded == [GOOD, FLAKY]
    assert [uid for uid, _ in report.failed] == [BROKEN]
    assert "zip" in report.failed[0][1]
    good = out / "CPTAC-GBM" / "C3L-00001" / "1.2.3.1" / GOOD
    dicoms = sorted(good.glob("*.dcm"))
    assert len(dicoms) == 3 and (good / "LICENSE").is_file()
    assert {pydicom.dcmread(p).SeriesInstanceUID for p in dicoms} == {GOOD}
    assert len(list((out / "CPTAC-GBM" / "C3L-00002" / "1.2.3.2" / FLAKY).glob("*.dcm"))) == 2
    assert not (out / "CPTAC-GBM" / "C3L-00003").exists()  # a failed series leaves nothing to trust
    assert not (out / ".partial").exists()
    assert _image_requests(hits, FLAKY) == 3
    status = {row["SeriesInstanceUID"]: row["status"] for row in read_csv(out / "CPTAC-GBM" / "series.csv")}
    assert status[GOOD] == "complete" and status[BROKEN].startswith("failed")


def test_rerun_skips_finished_series(nbia, tmp_path):
    url, hits = nbia
    out = tmp_path / "tcia"
    client = NbiaClient(url, retries=3, backoff=0.01)
    fetch_collection(client, "CPTAC-GBM", out, modality="MR")
    before = _image_requests(hits, GOOD)
    report = fetch_collection(client, "CPTAC-GBM", out, modality="MR")
    assert report.skipped == [GOOD, FLAKY] and report.downloaded == []
    assert _image_requests(hits, GOOD) == before


def test_max_series_and_all_modalities(nbia, tmp_path):
    url, hits = nbia
    report = fetch_collection(
        NbiaClient(url, retries=2, backoff=0.01), "CPTAC-GBM", tmp_path / "t", max_series=1
    )
    assert report.downloaded == [GOOD] and not report.failed
    report = fetch_collection(
        NbiaClient(url, retries=2, backoff=0.01), "CPTAC-GBM", tmp_path / "t", modality="CT"
    )
    assert report.downloaded == [CT]


def test_server_down_is_a_download_error(tmp_path):
    from servers import closed_port_url

    with pytest.raises(DownloadError, match="gave up after 2 attempts"):
        fetch_collection(NbiaClient(closed_port_url(), retries=2, backoff=0.01), "CPTAC-GBM", tmp_path)


def test_cli_reports_failed_series_and_exits_1(nbia, tmp_path, capsys):
    url, hits = nbia
    code = main(
        [
            "fetch-tcia",
            "--collection",
            "CPTAC-GBM",
            "--modality",
            "MR",
            "--out",
            str(tmp_path / "o"),
            "--api",
            url,
            "--retries",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert f"failed series {BROKEN}" in captured.err
    assert captured.out.strip().startswith("CPTAC-GBM: ")
