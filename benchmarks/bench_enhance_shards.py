"""Benchmark: ``medsr enhance`` of a tree of CT series by 1, 2, ... processes (torchrun shards).

The tree: real 512x512 chest CT (the sample data's lung volumes) written as DICOM series
(``_common.write_ct_dicom_tree``: 2 patients per copy, the first ``--slices`` slices of each). Each
configuration runs the whole command as a user would (``medsr enhance TREE -o OUT``, or ``python
-m torch.distributed.run --standalone --nproc-per-node N -m medsr enhance ...``) into a fresh
output folder, start-up and model loading included, with the machine's cores shared out
(``OMP_NUM_THREADS`` = cores / processes) on the CPU, or one GPU per process with ``--device cuda``.
Rounds are interleaved; medians reported; every configuration's outputs are checked equal to one
process's (pixel values).

    .venv/bin/python benchmarks/bench_enhance_shards.py [--procs 1,2] [--copies 2] [--slices 6]
        [--rounds 3] [--model medsr-x4] [--device auto] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from _common import write_ct_dicom_tree
from medsr.io import read_slices


def command(procs: int, tree: Path, out: Path, model: str, device: str) -> list[str]:
    """The command line of one configuration."""
    enhance = ["-m", "medsr", "enhance", str(tree), "-o", str(out), "--model", model, "--device", device]
    if procs == 1:
        return [sys.executable, *enhance]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(procs),
        *enhance,
    ]


def run_once(procs: int, tree: Path, out: Path, args: argparse.Namespace) -> float:
    """Seconds of one run of the command into a fresh ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if args.device != "cuda":
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // procs))
    began = time.perf_counter()
    done = subprocess.run(
        command(procs, tree, out, args.model, args.device), capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{procs} processes failed:\n{done.stderr[-2000:]}")
    return seconds


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): read_slices(p)[0].pixels for p in sorted(folder.rglob("*.dcm"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", default="1,2", help="process counts to compare (default 1,2)")
    parser.add_argument("--copies", type=int, default=2, help="tree copies (2 series each)")
    parser.add_argument("--slices", type=int, default=6, help="slices per series")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="medsr-x4")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(n) for n in args.procs.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        files = write_ct_dicom_tree(root / "tree", args.copies, args.slices)
        times: dict[int, list[float]] = {n: [] for n in counts}
        for _ in range(args.rounds):
            for n in counts:
                times[n].append(run_once(n, root / "tree", root / f"out{n}", args))
        reference = pixels(root / f"out{counts[0]}")
        for n in counts[1:]:
            other = pixels(root / f"out{n}")
            assert sorted(other) == sorted(reference), f"{n} processes wrote other files"
            assert all(np.array_equal(reference[k], other[k]) for k in reference), f"{n} processes differ"
    base = statistics.median(times[counts[0]])
    results = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "device": args.device,
        "model": args.model,
        "files": files,
        "series": 2 * args.copies,
        "configurations": {
            n: {
                "seconds_median": statistics.median(times[n]),
                "seconds": times[n],
                "slices_per_s": files / statistics.median(times[n]),
                "speedup": base / statistics.median(times[n]),
            }
            for n in counts
        },
    }
    print(
        f"{files} slices of 512x512 in {2 * args.copies} series, {args.model} on {args.device}, {results['machine']}"
    )
    print("| processes | threads each | seconds (median) | slices/s | x one process |")
    print("|---|---|---|---|---|")
    for n, row in results["configurations"].items():
        threads = "-" if args.device == "cuda" else max(1, (os.cpu_count() or 1) // n)
        print(
            f"| {n} | {threads} | {row['seconds_median']:.1f} | {row['slices_per_s']:.2f} | {row['speedup']:.2f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
