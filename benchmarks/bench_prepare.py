"""Benchmark: ``medsr prepare`` throughput on 512x512 CT DICOM, and the detail score's speed-up.

Input: real chest CT (the pyradiomics lung volumes of the sample data, HU) written as one DICOM
file per 512x512 slice, copied into ``--copies`` patients (default 4, 436 files). Measures, side
by side in one run and as medians of ``--repeats`` runs:
  * prepare end to end (read, window, size check, Gaussian + score, split, 16-bit PNG, manifest)
    with all cores and with one worker, in slices per second;
  * the vectorised pixel difference score against the original code's pure-Python double loop.

Usage: python benchmarks/bench_prepare.py [--copies 4] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

from _common import median_time, write_ct_dicom_tree
from medsr.data.detail import pixel_difference_score, pixel_difference_score_loop
from medsr.data.prepare import PrepareOptions, prepare
from medsr.io import read_slices


def time_prepare(src: Path, out: Path, workers: int, repeats: int) -> float:
    def run() -> None:
        shutil.rmtree(out, ignore_errors=True)
        prepare([src], out, PrepareOptions(size=512, workers=workers))

    return median_time(run, repeats, warmup=0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = write_ct_dicom_tree(tmp / "src", args.copies)
        all_cores = time_prepare(tmp / "src", tmp / "out", cores, args.repeats)
        one_core = time_prepare(tmp / "src", tmp / "out", 1, args.repeats)
        image = read_slices(next((tmp / "src").rglob("*.dcm")))[0].pixels
    unit = np.clip((image + 1024) / 4095, 0, 1)
    vectorised = median_time(lambda: pixel_difference_score(unit), 20)
    loop = median_time(lambda: pixel_difference_score_loop(unit), 3)
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {cores} cores, {platform.processor() or 'cpu'}",
        "python": sys.version.split()[0],
        "files": files,
        "prepare_slices_per_s_all_cores": round(files / all_cores, 1),
        "prepare_slices_per_s_one_worker": round(files / one_core, 1),
        "detail_score_vectorised_ms": round(vectorised * 1e3, 2),
        "detail_score_python_loop_ms": round(loop * 1e3, 1),
        "detail_score_speedup": round(loop / vectorised, 1),
        "bit_for_bit_equal": pixel_difference_score(unit) == pixel_difference_score_loop(unit),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
