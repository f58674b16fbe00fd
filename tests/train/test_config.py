from __future__ import annotations

import re

import pytest

from conftest import ROOT
from medsr.errors import ConfigError
from medsr.train.config import load_config

CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    import yaml

    from medsr.pipeline import load_run_config

    is_run_config = "srresnet" in yaml.safe_load(path.read_text())  # medsr run configs name their stages
    config = load_run_config(path) if is_run_config else load_config(path)
    assert config.name and config.run_dir


def test_the_built_in_model_is_the_recipe_trained_on_train_and_val_for_fixed_iterations():
    recipe, zoo = (load_config(ROOT / "configs" / p) for p in ("recipe_x4.yaml", "zoo/medsr_x4.yaml"))
    assert zoo.model == recipe.model and zoo.name == "medsr-x4"
    length = {"time_budget", "iterations", "epochs", "amp"}
    assert {k: v for k, v in vars(zoo.train).items() if k not in length} == {
        k: v for k, v in vars(recipe.train).items() if k not in length
    }
    assert (
        zoo.train.iterations and zoo.train.time_budget is None and zoo.data.train_splits == ["train", "val"]
    )
    assert zoo.data.dataset == "runs/demo/dataset"  # the demo's data set: its test patients stay held out


def test_paper_configs_say_what_the_paper_did():
    srresnet = load_config(ROOT / "configs" / "paper_srresnet.yaml")
    assert (srresnet.train.epochs, srresnet.train.lr, srresnet.train.pixel_loss) == (100, 1e-4, "mse")
    assert srresnet.model.kwargs() == {"scale": 4, "blocks": 16, "channels": 64, "upsample_skip": False}
    assert (srresnet.data.patch_size, srresnet.data.batch_size) == (96, 16)
    srgan = load_config(ROOT / "configs" / "paper_srgan.yaml")
    assert srgan.train.stage == "adversarial" and srgan.train.epochs == 50
    assert srgan.train.init_from == f"{srresnet.run_dir}/best.pt"
    assert srgan.adversarial.adversarial_weight == 1e-3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=fast", "train.lr: expected a number, got 'fast'"),
        ("train.learning_rate=1", "train.learning_rate: unknown key"),
        ("data.degradation.kind=jpeg", "data.degradation.kind: expected one of"),
        ("model.blocks=0", "model.blocks: must be positive"),
        ("data.patch_size=50", "data.patch_size: 50 is not a multiple"),
        ("train.betas=[0.9]", "train.betas: expected two numbers"),
        ("data.augment=maybe", "data.augment: expected true or false"),
        ("adversarial.content_layer=5", "adversarial.content_layer: expected a list"),
        ("model.scale=3", "model.scale: srresnet supports 2, 4, 8, got 3"),
        ("model.name=resnet", "model.name: unknown architecture 'resnet' (known: msrresnet, span, srresnet)"),
        ("model.width=3", "model.width: unknown key for srresnet (known: name, scale, blocks, channels"),
        ("model.channels=0", "model.channels: must be positive, got 0"),
        ("model.upsample_skip=1", "model.upsample_skip: expected true or false, got 1"),
        ("train.time_budget=soon", "train.time_budget: expected a duration such as 20m"),
        ("train.time_budget=0s", "train.time_budget: a duration must be positive"),
        ("train.iterations=0", "train.iterations: must be positive, got 0"),
        ("train.schedule=step", "train.schedule: expected one of 'constant', 'cosine'"),
        ("train.warmup=1", "train.warmup: must be in [0, 1)"),
        ("train.min_lr=-1", "train.min_lr: must be >= 0"),
        ("train.pixel_loss=huber", "train.pixel_loss: expected one of 'mse', 'l1', 'charbonnier'"),
        ("train.grad_clip=-1", "train.grad_clip: must be positive, got -1"),
        ("data.degradation.noise_level=-1", "data.degradation: noise_level must be >= 0"),
        ("data.train_splits=[val]", "data.train_splits: must hold train, and each split once"),
        ("data.train_splits=[train, test]", "data.train_splits[1]: expected one of 'train', 'val'"),
        ("data.degradation.taper=kaiser", "data.degradation.taper: expected one of 'none', 'hann', 'tukey'"),
    ],
)
def test_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_overrides_and_yaml_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  lr: 1e-4\n  epochs: 7\n")
    config = load_config(path, ["train.epochs=3", "data.val_limit=null", "train.ema=0.99"])
    assert (
        config.train.lr == 1e-4
        and config.train.epochs == 3
        and config.data.val_limit is None
        and config.train.ema == 0.99
    )
    path.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


def test_training_degradation_has_the_library_defaults():
    import dataclasses

    from medsr.data.degrade import Degradation
    from medsr.train.config import DegradationConfig

    library = Degradation()
    for field in dataclasses.fields(DegradationConfig):
        assert getattr(DegradationConfig(), field.name) == getattr(library, field.name), field.name
