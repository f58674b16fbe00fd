"""Benchmark: peak memory (and time) of ``medsr enhance`` on a 4000x4000 radiograph on CPU.

Input: the sample data's real chest radiograph (pydicom-data RG1_UNCR, 1955x1841, 15-bit,
MONOCHROME1) mirrored out to 4000x4000 and saved as DICOM; output 16000x16000. ``medsr enhance``
runs in a child process; its peak resident memory comes from ``getrusage(RUSAGE_CHILDREN)``.

Usage: python benchmarks/bench_enhance_memory.py [--model CKPT_OR_NAME] [--json OUT]
  (default model: runs/demo/srresnet/best.pt when it exists, else bicubic)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pydicom

from medsr.data import sample

ROOT = Path(__file__).resolve().parent.parent


def make_radiograph(path: Path, size: int = 4000) -> None:
    folder = sample.fetch_samples()
    ds = pydicom.dcmread(folder / "pydicom-data" / "RG1_UNCR.dcm")
    pixels = ds.pixel_array
    pad_y, pad_x = max(0, size - pixels.shape[0]), max(0, size - pixels.shape[1])
    big = np.pad(
        pixels, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2)), mode="reflect"
    )[:size, :size]
    ds.Rows, ds.Columns = big.shape
    ds.PixelData = np.ascontiguousarray(big).astype(pixels.dtype).tobytes()
    ds.save_as(path, enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_model = ROOT / "runs" / "demo" / "srresnet" / "best.pt"
    parser.add_argument("--model", default=str(default_model) if default_model.is_file() else "bicubic")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_radiograph(tmp / "rg4000.dcm")
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "medsr",
                "enhance",
                str(tmp / "rg4000.dcm"),
                "--model",
                args.model,
                "-o",
                str(tmp / "out"),
                "--tile",
                str(args.tile),
                "--device",
                "cpu",
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        peak_gib = (
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
        )  # ru_maxrss is in KiB on Linux
        out = pydicom.dcmread(tmp / "out" / "rg4000.dcm", stop_before_pixels=True)
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": args.model,
        "input": "4000x4000",
        "output": f"{out.Rows}x{out.Columns}",
        "peak_rss_gib": round(peak_gib, 2),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
