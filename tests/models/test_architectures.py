"""Every registered architecture, one parametrised test each: shapes, learning, checkpoints,
tiling, the inference form, bf16 and channels_last."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsr.data.degrade import Degradation, degrade
from medsr.errors import MedsrError
from medsr.infer import enhance_tiled, tile_count
from medsr.io import read_slices
from medsr.models import load_model
from medsr.models.checkpoint import model_entry, save_checkpoint
from medsr.models.registry import SRNetwork, architecture, architectures, build_network, conv_radius

#: small options per architecture, so that each test runs in about a second
SMALL = {"srresnet": {"blocks": 2, "channels": 16}, "msrresnet": {"blocks": 2, "channels": 16}}
NAMES = sorted(architectures())


def small(name: str, scale: int = 4, **extra) -> SRNetwork:
    options = {"scale": scale, **SMALL.get(name, {"blocks": 2, "channels": 16}), **extra}
    torch.manual_seed(0)
    network = build_network(name, options)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, as after training
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return network


def saved_and_loaded(name: str, folder) -> tuple[SRNetwork, object]:
    """A small network of ``name``, and the model ``load_model`` makes of its checkpoint."""
    network = small(name)
    kwargs = {"scale": 4, **SMALL.get(name, {"blocks": 2, "channels": 16})}
    save_checkpoint(folder / "best.pt", {"model": model_entry(name, kwargs, network), "config": {}})
    return network, load_model(folder / "best.pt", device="cpu")


def test_every_architecture_takes_scale_and_declares_its_scales():
    assert {"srresnet", "msrresnet", "span"} <= set(NAMES)
    for spec in architectures().values():
        assert "scale" in spec.options and spec.scales and 4 in spec.scales and 2 in spec.scales


@pytest.fixture(scope="module")
def patches(ct_small_module) -> tuple[torch.Tensor, torch.Tensor]:
    """Real CT patches (pydicom's CT_small): 8 HR 32x32 crops and their x4 bicubic LR."""
    pixels = read_slices(ct_small_module)[0].pixels.astype(np.float32)
    image = np.clip((pixels - pixels.min()) / (pixels.max() - pixels.min()), 0, 1)
    crops = [image[y : y + 32, x : x + 32] for y in (16, 48, 80) for x in (16, 48, 80)][:8]
    hr = torch.from_numpy(np.stack(crops))[:, None]
    return degrade(hr, Degradation("bicubic", 4)), hr


@pytest.fixture(scope="module")
def ct_small_module():
    from conftest import pydicom_file

    return pydicom_file("CT_small.dcm")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [2, 4])
def test_odd_sizes_at_scale_2_and_4(name, scale):
    network = small(name, scale)
    assert network(torch.rand(2, 1, 13, 21)).shape == (2, 1, 13 * scale, 21 * scale)


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_lower_the_loss_on_real_patches(name, patches):
    lq, hr = patches
    network = small(name).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.l1_loss(network(lq), hr)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # residual networks start at interpolation quality, so the first steps gain little but must gain
    assert np.isfinite(losses).all() and min(losses[-3:]) < (1 - 1e-3) * losses[0]


@pytest.mark.parametrize("name", NAMES)
def test_inference_form_equals_the_training_graph(name):
    network = small(name).eval()
    x = torch.rand(2, 1, 19, 23)
    with torch.no_grad():
        reference = network(x)
        merged = network.inference_form()(x)
    assert merged.shape == reference.shape
    assert (merged - reference).abs().max().item() < 1e-5
    assert network.training is False and all(p.requires_grad for p in network.parameters())


def test_span_inference_form_is_plain_3x3_convolutions():
    merged = small("span").inference_form()
    kinds = {type(m).__name__ for m in merged.modules()}
    assert "Conv3XC" not in kinds
    params = sum(p.numel() for p in merged.parameters())
    assert params < sum(p.numel() for p in small("span").parameters()) / 3


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name, tmp_path):
    network, model = saved_and_loaded(name, tmp_path)
    lq = np.random.default_rng(0).random((20, 26), dtype=np.float32)
    with torch.no_grad():
        expected = network.eval()(torch.from_numpy(lq)[None, None]).clamp(0, 1)[0, 0].numpy()
    np.testing.assert_allclose(model.enhance(lq), expected, atol=1e-5)
    assert model.receptive_radius == network.receptive_radius()


@pytest.mark.parametrize("name", NAMES)
def test_tiled_output_equals_the_whole_image(name, tmp_path):
    _, model = saved_and_loaded(name, tmp_path)
    lq = np.random.default_rng(1).random((70, 90)).astype(np.float32)
    tile = 2 * model.receptive_radius + 24
    assert tile_count(lq.shape, tile, model.receptive_radius, 4) > 2
    tiled = enhance_tiled(model, lq, tile=tile, blend=4)
    assert np.abs(tiled - model.enhance(lq)).max() < 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_bf16_and_channels_last_paths(name):
    network = small(name).eval().to(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = small(name).eval()(x.contiguous())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = network(x).float()
        last = network(x)
    assert (last - reference).abs().max().item() < 1e-5
    assert torch.isfinite(low).all() and (low - reference).abs().mean().item() < 2e-2


def test_receptive_radius_bounds_the_real_influence():
    network = small("span", skip="bicubic").eval()
    radius = network.receptive_radius()
    x = torch.rand(1, 1, 2 * radius + 9, 2 * radius + 9)
    poked = x.clone()
    poked[0, 0, 0, 0] += 1.0  # changes outputs only within `radius` LR pixels of (0, 0)
    with torch.no_grad():
        diff = (network(poked) - network(x)).abs()[0, 0]
    assert diff[(radius + 1) * 4 :, :].max() == 0 and diff[:, (radius + 1) * 4 :].max() == 0
    assert diff[:4, :4].max() > 0


def test_a_new_architecture_is_one_class_and_one_decorator():
    from medsr.models import registry

    try:

        @architecture("_test_identity", scales=(2, 4))
        class Nearest(SRNetwork):
            """Nearest-neighbour upsampling as a network (test only)."""

            def __init__(self, scale: int = 4, gain: float = 1.0) -> None:
                super().__init__()
                self.scale = scale
                self.conv = torch.nn.Conv2d(1, 1, 1)

            def forward(self, x):
                return torch.nn.functional.interpolate(self.conv(x), scale_factor=self.scale)

        assert architectures()["_test_identity"].options == {"scale": (int, 4), "gain": (float, 1.0)}
        assert build_network("_test_identity", {"scale": 2})(torch.rand(1, 1, 5, 5)).shape == (1, 1, 10, 10)
        assert conv_radius(Nearest()) == 0
        from medsr.train.config import load_config

        config = load_config(None, ["model.name=_test_identity", "model.gain=2"])
        assert config.model.kwargs() == {"scale": 4, "gain": 2.0}
    finally:
        registry._ARCHITECTURES.pop("_test_identity", None)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"scale": 8}, "scale must be one of 2, 3, 4"),
        ({"width": 3}, "unknown option 'width'"),
    ],
)
def test_build_network_refuses_bad_options(options, message):
    with pytest.raises(MedsrError, match=message):
        build_network("span", options)


def test_a_span_with_a_skip_starts_near_the_interpolation():
    torch.manual_seed(0)
    plain = build_network("span", {"skip": "none"})
    torch.manual_seed(0)
    skipped = build_network("span", {"skip": "bicubic"})
    ratio = skipped.upsample[0].weight.std() / plain.upsample[0].weight.std()
    assert ratio.item() == pytest.approx(0.1) and skipped.upsample[0].bias.abs().max() == 0
    lq = torch.rand(1, 1, 16, 16)
    bicubic = torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        assert (skipped(lq) - bicubic).abs().mean() < 0.2 * (plain(lq) - bicubic).abs().mean()


def test_the_radius_follows_the_forward_order_not_the_declaration_order():
    class Reordered(SRNetwork):
        def __init__(self) -> None:
            super().__init__()
            self.shuffle = torch.nn.PixelShuffle(4)  # declared first, runs last
            self.body = torch.nn.Conv2d(1, 16, 9, padding=4)

        def forward(self, x):
            return self.shuffle(self.body(x))

    assert conv_radius(Reordered()) == 4  # the 9x9 conv runs at LR resolution
