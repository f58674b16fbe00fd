"""Anchor benchmark: a plain, textbook PyTorch SRResNet (Ledig et al. 2017, grayscale, x4).
Kept in the repository as the yardstick of benchmarks/bench_infer.py and bench_train.py (a copy of
the team's reference benchmark); it is measured, never imported by medsr.

Measures what a straightforward implementation reaches on this hardware, so the
project's own figures can be set against it. Not project code.
"""
import json, sys, time
import torch, torch.nn as nn, torch.nn.functional as F


class Res(nn.Module):
    def __init__(s, c=64):
        super().__init__()
        s.b = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c), nn.PReLU(),
                            nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c))
    def forward(s, x):
        return x + s.b(x)


class SRResNet(nn.Module):
    def __init__(s, c=64, n=16):
        super().__init__()
        s.head = nn.Sequential(nn.Conv2d(1, c, 9, 1, 4), nn.PReLU())
        s.body = nn.Sequential(*[Res(c) for _ in range(n)], nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c))
        s.up = nn.Sequential(nn.Conv2d(c, 4 * c, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU(),
                             nn.Conv2d(c, 4 * c, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU())
        s.tail = nn.Conv2d(c, 1, 9, 1, 4)
    def forward(s, x):
        h = s.head(x)
        return s.tail(s.up(h + s.body(h)))


def gflop_per_lr_pixel(c=64, n=16):
    macs = 81 * c + (2 * n + 1) * 9 * c * c + 9 * c * 4 * c + 4 * 9 * c * 4 * c + 16 * 81 * c
    return 2 * macs / 1e9


def timeit(fn, sync, warm=3, iters=10):
    for _ in range(warm):
        fn()
    sync()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t) / iters


def main():
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "torch": torch.__version__}
    gf = gflop_per_lr_pixel()
    res["gflop_per_512_output"] = gf * 128 * 128
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    bs = 32 if dev == "cuda" else 1
    iters = 10 if dev == "cuda" else 3
    # --- inference, 128x128 -> 512x512
    for name, dtype, cl, comp in [("eager_fp32", None, False, False), ("eager_bf16_cl", torch.bfloat16, True, False),
                                   ("compiled_bf16_cl", torch.bfloat16, True, True)]:
        if dev == "cpu" and dtype is not None:
            continue
        m = SRResNet().to(dev).eval()
        x = torch.rand(bs, 1, 128, 128, device=dev)
        if cl:
            m = m.to(memory_format=torch.channels_last); x = x.to(memory_format=torch.channels_last)
        f = torch.compile(m) if comp else m
        def run():
            with torch.inference_mode(), torch.autocast(dev, dtype=dtype, enabled=dtype is not None):
                f(x)
        try:
            t = timeit(run, sync, iters=iters)
            ips = bs / t
            res[f"infer_{name}_img_per_s"] = round(ips, 1)
            res[f"infer_{name}_tflops"] = round(ips * res["gflop_per_512_output"] / 1e3, 1)
        except Exception as e:
            res[f"infer_{name}_error"] = repr(e)[:200]
    # --- training step, MSE, 96x96 HR patches (24x24 LR), batch 16 as in Ledig; and full 512 images
    for name, lr, b in [("patch96_b16", 24, 16), ("full512_b16", 128, 16)]:
        if dev == "cpu" and name == "full512_b16":
            continue
        for tag, dtype in [("fp32", None), ("bf16", torch.bfloat16)]:
            if dev == "cpu" and dtype is not None:
                continue
            m = SRResNet().to(dev).to(memory_format=torch.channels_last)
            opt = torch.optim.Adam(m.parameters(), 1e-4)
            x = torch.rand(b, 1, lr, lr, device=dev).to(memory_format=torch.channels_last)
            y = torch.rand(b, 1, 4 * lr, 4 * lr, device=dev)
            def step():
                with torch.autocast(dev, dtype=dtype, enabled=dtype is not None):
                    loss = F.mse_loss(m(x).float(), y)
                opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            try:
                t = timeit(step, sync, iters=iters)
                res[f"train_{name}_{tag}_it_per_s"] = round(1 / t, 1)
                res[f"train_{name}_{tag}_tflops"] = round(3 * b * gf * lr * lr / t / 1e3, 1)
            except Exception as e:
                res[f"train_{name}_{tag}_error"] = repr(e)[:200]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
