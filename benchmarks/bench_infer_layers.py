"""Where SRResNet inference time goes: each layer shape timed alone.

On a GPU: each distinct layer of the 16 x 64 SRResNet at 128x128 -> 512x512 (channels-last, bf16
and fp16, cuDNN autotuned) timed with CUDA events, and the rewritten tail of
``medsr.models.tap_sum_conv`` (compiled), in microseconds per image. ``bench_infer.py --profile``
lists the kernels of the whole compiled networks. On a CPU: the 9 x 9 tail (64 -> 1 at 512x512)
as a oneDNN convolution and rewritten both ways (eager), in milliseconds per image, medians.

Usage: python benchmarks/bench_infer_layers.py [--batch 128 (GPU) | 2 (CPU)] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.tap_sum_conv import TapSumConv2d


def _time_us(fn, batch: int, reps: int = 10) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1000 / batch)
    return statistics.median(samples)


def _conv_case(batch, cin, cout, size, k, dtype, layout=torch.channels_last):
    x = torch.randn(batch, cin, size, size, device="cuda", dtype=dtype).to(memory_format=layout)
    w = (torch.randn(cout, cin, k, k, device="cuda", dtype=dtype) * 0.05).to(memory_format=layout)
    b = torch.zeros(cout, device="cuda", dtype=dtype)
    return lambda: F.conv2d(x, w, b, padding=k // 2)


def _module_case(module: nn.Module, batch, cin, size, dtype):
    module = torch.compile(module.cuda())
    x = torch.randn(batch, cin, size, size, device="cuda", dtype=dtype).to(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
            module(x)

    return run


def layer_times(batch: int) -> dict[str, float]:
    """Microseconds per image for each layer shape (one instance; the body has 33 such convs)."""
    results = {}
    for tag, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        cases = {
            "head_conv_1to64_k9_128": _conv_case(batch, 1, 64, 128, 9, dtype),
            "body_conv_64to64_k3_128": _conv_case(batch, 64, 64, 128, 3, dtype),
            "up1_conv_64to256_k3_128": _conv_case(batch, 64, 256, 128, 3, dtype),
            "up2_conv_64to256_k3_256": _conv_case(batch, 64, 256, 256, 3, dtype),
            "tail_conv_64to1_k9_512": _conv_case(batch, 64, 1, 512, 9, dtype),
            "tail_conv_64to8_k9_512": _conv_case(batch, 64, 8, 512, 9, dtype),
            "tail_conv_64to1_k9_512_nchw": _conv_case(batch, 64, 1, 512, 9, dtype, torch.contiguous_format),
        }
        if tag == "bf16":
            cases["tail_tapsum_compiled"] = _module_case(
                TapSumConv2d(64, 1, 9, form="pixel"), batch, 64, 512, dtype
            )
        for name, fn in cases.items():
            with torch.inference_mode():
                try:
                    results[f"{name}_{tag}_us"] = round(_time_us(fn, batch), 2)
                except Exception as exc:  # a shape cuDNN cannot run is reported, not fatal
                    results[f"{name}_{tag}_error"] = repr(exc)[:200]
            del fn
            torch.cuda.empty_cache()
    return results


def cpu_tail_times(batch: int, repeats: int = 5) -> dict[str, float]:
    """Milliseconds per image of the tail on the CPU: the convolution and both rewrites."""
    torch.manual_seed(0)
    x = torch.randn(batch, 64, 512, 512)
    layers = {
        name: TapSumConv2d(64, 1, 9, form=form).eval()
        for name, form in (("conv", "conv"), ("tapsum_pixel", "pixel"), ("tapsum_column", "column"))
    }
    results = {}
    for layout_name, layout in (("nchw", torch.contiguous_format), ("cl", torch.channels_last)):
        xl = x.to(memory_format=layout)
        for tag, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            if dtype is not None and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
                continue
            for name, layer in layers.items():
                with (
                    torch.inference_mode(),
                    torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None),
                ):
                    layer(xl)
                    samples = []
                    for _ in range(repeats):
                        start = time.perf_counter()
                        layer(xl)
                        samples.append((time.perf_counter() - start) * 1000 / batch)
                results[f"tail_{name}_{layout_name}_{tag}_ms"] = round(statistics.median(samples), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        batch = args.batch or 128
        result = {
            "device": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "batch": batch,
            **layer_times(batch),
        }
    else:
        batch = args.batch or 2
        result = {
            "device": f"cpu ({os.cpu_count()} cores)",
            "torch": torch.__version__,
            "batch": batch,
            **cpu_tail_times(batch),
        }
    print(json.dumps(result, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
