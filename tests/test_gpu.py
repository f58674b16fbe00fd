"""Checks that need a CUDA GPU (marker ``gpu``; skipped on machines without one, such as CI)."""

from __future__ import annotations

import pytest
import torch

from medsr.models.arch.srresnet import SRResNet
from medsr.train.steps import CudaGraphStep, SupervisedStep

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _run(graph: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = SRResNet(blocks=2, channels=16).cuda()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3, capturable=True)
    step = SupervisedStep(model, optimizer, "mse", None)
    if graph:
        step = CudaGraphStep(step)
    generator = torch.Generator(device="cuda").manual_seed(1)
    for _ in range(8):
        hr = torch.rand(4, 1, 32, 32, device="cuda", generator=generator)
        lq = torch.nn.functional.avg_pool2d(hr, 4)
        step(lq, hr)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_cuda_graph_step_trains_like_the_eager_step():
    torch.backends.cudnn.deterministic = True
    eager, graphed = _run(False), _run(True)
    for key in eager:
        torch.testing.assert_close(graphed[key], eager[key], atol=1e-4, rtol=1e-3)


def test_compiled_tap_sum_tail_matches_the_plain_network():
    torch.manual_seed(0)
    model = SRResNet(blocks=2, channels=16).cuda().eval()
    x = torch.rand(3, 1, 40, 36, device="cuda")
    assert model.tail.form_for(x) == "conv"  # grad enabled (training): cuDNN's convolution
    with torch.inference_mode():
        assert model.tail.form_for(x) == "pixel"
        model.tail.form = "conv"
        reference = model(x)
    model.tail.form = "auto"
    fast = torch.compile(model.to(memory_format=torch.channels_last))
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        out = fast(x.to(memory_format=torch.channels_last))
    assert out.shape == reference.shape and out.dtype == torch.float32
    assert (out - reference).abs().max() < 2e-2


def test_network_model_on_cuda_matches_the_cpu():
    import numpy as np

    from medsr.models.network import NetworkModel

    torch.manual_seed(0)
    lq = np.random.default_rng(0).random((3, 1, 40, 36), dtype=np.float32)
    module = SRResNet(blocks=2, channels=16)
    reference = NetworkModel(module, "srresnet", 4, device="cpu").enhance_batch(lq)
    for options in ({}, {"precision": "bf16", "compile": True}):
        gpu = NetworkModel(module, "srresnet", 4, device="cuda", **options)
        assert np.abs(gpu.enhance_batch(lq) - reference).max() < (2e-2 if options else 1e-3)


def test_enhance_cli_on_cuda_gives_the_cpu_values(tmp_path):
    """A real CT slice through ``medsr enhance`` on CPU, on CUDA in fp32 (TF32 convolutions) and on
    CUDA in bf16 compiled: the same derived DICOM, HU values within rounding of each other."""
    import numpy as np
    import pydicom

    from conftest import write_ct_series
    from medsr.cli import main
    from medsr.models.checkpoint import model_entry, save_checkpoint

    torch.manual_seed(0)
    kwargs = {"scale": 4, "blocks": 2, "channels": 8, "upsample_skip": True}  # output = bicubic + residual
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(
        checkpoint,
        {
            "model": model_entry("srresnet", kwargs, SRResNet(**kwargs)),
            "config": {"name": "tiny"},
            "intensity": {"ct_window": [-1024, 3071], "percentiles": [0, 100]},
        },
    )
    write_ct_series(tmp_path / "in", 1)
    runs = {
        "cpu": ["--device", "cpu"],
        "cuda": ["--device", "cuda"],
        "cuda_bf16": ["--device", "cuda", "--precision", "bf16", "--compile"],
    }
    hu = {}
    for name, flags in runs.items():
        assert (
            main(
                [
                    "enhance",
                    str(tmp_path / "in"),
                    "--model",
                    str(checkpoint),
                    "-o",
                    str(tmp_path / name),
                    *flags,
                ]
            )
            == 0
        )
        ds = pydicom.dcmread(next((tmp_path / name).rglob("*.dcm")))
        hu[name] = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert hu["cpu"].shape == (512, 512) and hu["cpu"].std() > 50  # a real image, not a constant
    assert np.abs(hu["cuda"] - hu["cpu"]).max() <= 0.001 * 4095 + 1
    assert np.abs(hu["cuda_bf16"] - hu["cpu"]).max() <= 0.004 * 4095


def test_a_captured_step_follows_the_schedule():
    """The CUDA graph reads the learning rate from a tensor, so a schedule changes it after capture."""
    from medsr.train.schedule import set_lr

    torch.manual_seed(0)
    model = SRResNet(blocks=1, channels=8).cuda()
    optimizer = torch.optim.Adam(model.parameters(), torch.tensor(1e-3, device="cuda"), capturable=True)
    step = CudaGraphStep(SupervisedStep(model, optimizer, "l1", None, grad_clip=1.0))
    lq, hr = torch.rand(4, 1, 8, 8, device="cuda"), torch.rand(4, 1, 32, 32, device="cuda")
    for _ in range(5):
        step(lq, hr)
    set_lr(optimizer, 0.0)
    before = [p.detach().clone() for p in model.parameters()]
    step(lq, hr)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # rate 0: no change


@pytest.mark.parametrize("factor", [2.0, 2.5])
def test_through_plane_reconstruction_on_the_gpu_matches_the_cpu(factor):
    import nibabel as nib
    import numpy as np

    from conftest import NIBABEL_DATA
    from medsr.isotropic import fine_count, thick_slices
    from medsr.isotropic.network import ThroughPlaneNet
    from medsr.isotropic.reconstruct import reconstruct

    head = np.asarray(nib.load(str(NIBABEL_DATA / "anatomical.nii")).dataobj, np.float32)  # real, 2 mm
    thick = np.moveaxis(thick_slices(head / head.max(), 2, factor, factor, "gaussian"), 2, 0)  # slices first
    torch.manual_seed(0)
    network = ThroughPlaneNet(factor).eval()
    on_cpu = reconstruct(network, thick, torch.device("cpu"))
    on_gpu = reconstruct(network.cuda(), thick, torch.device("cuda"))
    assert on_gpu.shape == (fine_count(thick.shape[0], factor), 33, 41)
    assert np.abs(on_gpu - on_cpu).max() < 1e-4
