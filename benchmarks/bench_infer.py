"""Benchmark: inference throughput 128x128 -> 512x512 against the textbook SRResNet, side by side.

The yardstick (``textbook_srresnet.py``) runs its SRResNet in eval mode: eager fp32 (batch 1 on
CPU, 32 on a GPU), and on a GPU also bf16 channels_last and torch.compile'd bf16. medsr runs the
same architecture (16 blocks x 64 channels, channel-wise PReLU, BatchNorm with non-trivial
statistics) through its inference path: BatchNorm folded into the convolutions, channels_last,
bf16 on GPUs (and on CPUs with AMX), larger batches, and on a GPU a CUDA graph of the forward pass
or the 9 x 9 tail computed as partial maps and a shifted sum (``medsr.models.tap_sum_conv``),
eager or compiled.
Images per second, medians of interleaved rounds.

Usage: python benchmarks/bench_infer.py [--yardstick PATH] [--json OUT] [--profile OUT.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

from bench_train import add_yardstick_argument, load_yardstick, sync
from medsr.models.arch.srresnet import SRResNet, fold_batchnorm


def _with_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm non-trivial running statistics (as after training)."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def textbook(yardstick, device, batch, dtype=None, channels_last=False, compiled=False):
    model = yardstick.SRResNet().to(device).eval()
    x = torch.rand(batch, 1, 128, 128, device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    network = torch.compile(model) if compiled else model

    def run():
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            network(x)

    return run, batch


def medsr(device, batch, dtype=None, compiled=False, graph=False, mode=None, tap_sum=False):
    torch.manual_seed(0)
    model = fold_batchnorm(_with_statistics(SRResNet())).to(device).to(memory_format=torch.channels_last)
    model.tail.form = "auto" if tap_sum else "conv"  # "folded" variants: the plain convolution as tail
    x = torch.rand(batch, 1, 128, 128, device=device).to(memory_format=torch.channels_last)
    network = torch.compile(model, mode=mode) if compiled else model

    def forward():
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=False),
        ):
            return network(x)

    if not graph:
        return forward, batch
    with torch.inference_mode():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                forward()
        torch.cuda.current_stream().wait_stream(side)
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            output = forward()

    def replay(keep=(captured, x, model, network, output)):  # the graph reads and writes these buffers
        captured.replay()

    return replay, batch


def rates(variants: dict, device, seconds: float, repeats: int = 3) -> tuple[dict, dict]:
    errors, calls = {}, {}
    for name, (run, _batch) in list(variants.items()):
        try:
            for _ in range(3):
                run()
            sync(device)
            start, count = time.perf_counter(), 0
            while time.perf_counter() - start < seconds / 3:
                run()
                count += 1
            sync(device)
            calls[name] = max(1, count)
        except Exception as exc:
            errors[name] = repr(exc)[:300]
            del variants[name]
    measured: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (run, batch) in variants.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(calls[name]):
                run()
            sync(device)
            measured[name].append(calls[name] * batch / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in measured.items()}, errors


def profile_kernels(variants: dict, names: list[str], rows: int = 16) -> str:
    """Each named variant's top GPU kernels by total time over 3 calls (torch.profiler)."""
    text = []
    for name in names:
        if name not in variants:
            continue
        run, batch = variants[name]
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                run()
            torch.cuda.synchronize()
        table = prof.key_averages().table(
            sort_by="cuda_time_total", row_limit=rows, max_name_column_width=100
        )
        text.append(f"== {name} (3 calls of batch {batch})\n{table}\n")
    return "".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_yardstick_argument(parser)
    parser.add_argument(
        "--seconds", type=float, default=None, help="time per variant and round (default 6 on CPU, 2 on GPU)"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--profile", type=Path, help="GPU only: write the compiled variants' top kernels here"
    )
    args = parser.parse_args()
    yardstick = load_yardstick(args.yardstick)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    bf16 = torch.bfloat16
    if device.type == "cuda":
        variants = {
            "textbook_eager_fp32": textbook(yardstick, device, 32),
            "textbook_bf16_cl": textbook(yardstick, device, 32, bf16, True),
            "textbook_compiled_bf16_cl": textbook(yardstick, device, 32, bf16, True, True),
            "medsr_folded_bf16_cl_b32": medsr(device, 32, bf16),
            "medsr_folded_bf16_cl_b128": medsr(device, 128, bf16),
            "medsr_folded_bf16_cl_compiled_b128": medsr(device, 128, bf16, compiled=True),
            "medsr_folded_bf16_cl_cudagraph_b128": medsr(device, 128, bf16, graph=True),
            "medsr_tapsum_bf16_cl_b128": medsr(device, 128, bf16, tap_sum=True),
            "medsr_tapsum_bf16_cl_compiled_b128": medsr(device, 128, bf16, compiled=True, tap_sum=True),
        }
        if os.environ.get("MEDSR_BENCH_AUTOTUNE"):  # minutes of kernel autotuning
            variants["medsr_folded_fp16_cl_autotuned_b128"] = medsr(
                device, 128, torch.float16, compiled=True, mode="max-autotune"
            )
    else:
        variants = {
            "textbook_eager_fp32": textbook(yardstick, device, 1),
            "medsr_folded_fp32_cl_b1": medsr(device, 1),
            "medsr_tapsum_fp32_cl_b1": medsr(device, 1, tap_sum=True),
            "medsr_tapsum_fp32_cl_b4": medsr(device, 4, tap_sum=True),
        }
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            variants["medsr_folded_bf16_cl_b4"] = medsr(device, 4, bf16)
            variants["medsr_tapsum_bf16_cl_b4"] = medsr(device, 4, bf16, tap_sum=True)
    measured, errors = rates(variants, device, args.seconds or (6.0 if device.type == "cpu" else 2.0))
    result = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu ({os.cpu_count()} cores, {platform.machine()})",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        **{f"{k}_img_s": round(v, 2) for k, v in measured.items()},
        **{f"{k}_error": v for k, v in errors.items()},
    }
    best = max(v for k, v in measured.items() if k.startswith("medsr"))
    reference = (
        "textbook_compiled_bf16_cl" if "textbook_compiled_bf16_cl" in measured else "textbook_eager_fp32"
    )
    result[f"ratio_vs_{reference}"] = round(best / measured[reference], 2)
    fp32 = [v for k, v in measured.items() if k.startswith("medsr") and "_fp32_" in k]
    if fp32 and device.type == "cpu":
        result["ratio_fp32_vs_textbook_eager_fp32"] = round(max(fp32) / measured["textbook_eager_fp32"], 2)
    if {"medsr_tapsum_bf16_cl_compiled_b128", "medsr_folded_bf16_cl_b128"} <= set(variants):
        # same seed, so the same weights and inputs: the rewrite must not change the outputs beyond bf16 rounding
        fast, plain = (
            variants["medsr_tapsum_bf16_cl_compiled_b128"][0](),
            variants["medsr_folded_bf16_cl_b128"][0](),
        )
        result["max_abs_diff_tapsum_compiled_vs_folded_eager"] = float(
            (fast.float() - plain.float()).abs().max()
        )
        result["output_range_folded_eager"] = [float(plain.min()), float(plain.max())]
    print(json.dumps(result, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.profile and device.type == "cuda":
        args.profile.write_text(profile_kernels(variants, [k for k in variants if "compiled" in k]))


if __name__ == "__main__":
    main()
