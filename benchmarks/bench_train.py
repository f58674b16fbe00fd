"""Benchmark: training iterations/s of medsr's SRResNet step against the textbook yardstick,
side by side in one process, at the same patch size and batch (96x96 HR patches, batch 16).

medsr's figure includes its whole data pipeline (random patches from real CT slices held on the
device, flips/rotations, antialiased bicubic LR made on the fly); the yardstick's uses fixed
random tensors. Variants: CPU fp32; on a GPU also bf16 + channels_last + fused Adam, the same
with the step captured in a CUDA graph, and with torch.compile.

Usage: python benchmarks/bench_train.py [--yardstick PATH] [--iters N] [--json OUT]
  (PATH defaults to ../shared/bench/textbook_srresnet.py beside the repository)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

from medsr.data.degrade import Degradation
from medsr.data.prepare import KeepRule, PrepareOptions, prepare
from medsr.data.split import SplitSpec
from medsr.models.arch.srresnet import SRResNet
from medsr.train.data import PatchSampler
from medsr.train.steps import CudaGraphStep, SupervisedStep

ROOT = Path(__file__).resolve().parent.parent


def build_dataset(folder: Path) -> Path:
    """The sample data's lung CT (109 slices of 512x512) as a prepared data set."""
    from _common import write_ct_dicom_tree

    write_ct_dicom_tree(folder / "src", 1)
    prepare(
        [folder / "src"],
        folder / "ds",
        PrepareOptions(size=512, keep=KeepRule("all"), split=SplitSpec.parse("0.5,0.5,0")),
    )
    return folder / "ds"


def add_yardstick_argument(parser: argparse.ArgumentParser) -> None:
    """``--yardstick PATH``: the textbook SRResNet measured beside medsr (default: the copy in
    benchmarks/yardstick, or ``MEDSR_YARDSTICK``)."""
    default = os.environ.get("MEDSR_YARDSTICK", ROOT / "benchmarks" / "yardstick" / "textbook_srresnet.py")
    parser.add_argument("--yardstick", type=Path, default=Path(default))


def load_yardstick(path: Path):
    spec = importlib.util.spec_from_file_location("textbook_srresnet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_rates(
    steps: dict, device: torch.device, iters: int, repeats: int = 3, warmup: int = 4
) -> tuple[dict[str, float], dict[str, str]]:
    """Iterations/s of each step: warm-up (compilation, graph capture), then ``repeats`` rounds in
    which every variant is timed once in turn (so drifts of a shared machine hit all alike); medians."""
    errors = {}
    for name, step in list(steps.items()):
        try:
            for _ in range(warmup):
                step()
        except Exception as exc:  # a variant the platform cannot run is reported, the others measured
            errors[name] = repr(exc)[:300]
            del steps[name]
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(iters):
                step()
            sync(device)
            rates[name].append(iters / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}, errors


def textbook_step(yardstick, device: torch.device, dtype):
    model = yardstick.SRResNet().to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.rand(16, 1, 24, 24, device=device).to(memory_format=torch.channels_last)
    y = torch.rand(16, 1, 96, 96, device=device)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.mse_loss(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def medsr_step(
    sampler: PatchSampler, device: torch.device, *, amp, channels_last: bool, graph: bool, compiled: bool
):
    torch.manual_seed(0)
    model = SRResNet().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        model.parameters(), 1e-4, **({"capturable": True} if graph else {"fused": device.type == "cuda"})
    )
    network = torch.compile(model) if compiled else model
    step = SupervisedStep(network, optimizer, "mse", amp)
    if graph:
        step = CudaGraphStep(step)
    state = {"epoch": 0, "batches": iter(())}

    def run():
        try:
            lq, hr = next(state["batches"])
        except StopIteration:
            state["epoch"] += 1
            state["batches"] = sampler.batches(state["epoch"], seed=0)
            lq, hr = next(state["batches"])
        if channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        step(lq, hr)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_yardstick_argument(parser)
    parser.add_argument(
        "--iters", type=int, default=None, help="timed iterations per repeat (default 4 on CPU, 200 on GPU)"
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        help="a prepared data set to draw patches from (default: build one from the sample data)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    yardstick = load_yardstick(args.yardstick)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    iters = args.iters or (200 if device.type == "cuda" else 4)
    result = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu ({os.cpu_count()} cores, {platform.machine()})",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "patch": 96,
        "batch": 16,
    }
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or build_dataset(Path(tmp))
        sampler = PatchSampler(
            dataset,
            patch_size=96,
            batch_size=16,
            patches_per_image=64,
            augment=True,
            degradation=Degradation(),
            device=device,
        )
        steps = {
            "textbook_fp32": textbook_step(yardstick, device, None),
            "medsr_fp32": medsr_step(
                sampler, device, amp=None, channels_last=device.type == "cuda", graph=False, compiled=False
            ),
            "medsr_fp32_cl_compile": medsr_step(
                sampler, device, amp=None, channels_last=True, graph=False, compiled=True
            ),
        }
        bf16 = torch.bfloat16
        if device.type == "cuda":
            steps["textbook_bf16"] = textbook_step(yardstick, device, bf16)
            steps["medsr_bf16_cl"] = medsr_step(
                sampler, device, amp=bf16, channels_last=True, graph=False, compiled=False
            )
            steps["medsr_bf16_cl_cudagraph"] = medsr_step(
                sampler, device, amp=bf16, channels_last=True, graph=True, compiled=False
            )
            steps["medsr_bf16_cl_compile"] = medsr_step(
                sampler, device, amp=bf16, channels_last=True, graph=False, compiled=True
            )
        else:
            steps["medsr_fp32_cl"] = medsr_step(
                sampler, device, amp=None, channels_last=True, graph=False, compiled=False
            )
        if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():  # CPUs with AVX512-BF16/AMX
            steps["medsr_bf16_cl_cpu"] = medsr_step(
                sampler, device, amp=bf16, channels_last=True, graph=False, compiled=False
            )
        rates, errors = interleaved_rates(steps, device, iters)
        for name, rate in rates.items():
            result[f"{name}_it_s"] = round(rate, 2)
        for name, error in errors.items():
            result[f"{name}_error"] = error
        fp32 = [v for k, v in result.items() if k.startswith("medsr_fp32") and k.endswith("_it_s")]
        result["ratio_fp32_vs_textbook_fp32"] = round(max(fp32) / result["textbook_fp32_it_s"], 2)
        best = max(v for k, v in result.items() if k.startswith("medsr_") and k.endswith("_it_s"))
        result["best_medsr_it_s"] = best
        result["ratio_vs_textbook_fp32"] = round(best / result["textbook_fp32_it_s"], 2)
        if "textbook_bf16_it_s" in result:
            result["ratio_vs_textbook_bf16"] = round(best / result["textbook_bf16_it_s"], 2)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
