"""``fit()``: the one training loop for both stages (SRResNet and SRGAN), resumable and distributed.

Per epoch: the step (``SupervisedStep`` or ``AdversarialStep``) runs over the epoch's batches;
then, on rank 0, the generator (its EMA when enabled) is scored on whole validation images
(PSNR, SSIM, exactly as ``medsr evaluate`` scores) and on a few training images (the train curve);
``last.pt`` is written atomically every epoch, ``best.pt`` when the epoch is the best so far by
the paper's rule: highest validation SSIM, ties broken by PSNR (``best.pt`` first, so a kill
between the two writes is repaired by the next resume: see ``train.resume``). Each checkpoint
records what it was trained on (``data.provenance``). ``resume=True`` continues the run only when
it is the same run (``train.resume``) and reaches the same result as an uninterrupted run.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medsr import layout
from medsr.batching import batches_by_shape
from medsr.data.provenance import training_record
from medsr.errors import ConfigError, MedsrError
from medsr.fsutil import atomic_write_text
from medsr.metrics import psnr, ssim
from medsr.models.checkpoint import model_entry, read_checkpoint, save_checkpoint, unwrap
from medsr.models.discriminator import Discriminator
from medsr.models.srresnet import SRResNet
from medsr.train import distributed
from medsr.train.config import ExperimentConfig, degradation_of, dump_config
from medsr.train.data import PatchSampler, ScoringSet, scoring_set
from medsr.train.logs import RunLog
from medsr.train.resume import (
    BEST,
    LAST,
    latest_checkpoint,
    missing_best,
    repair_pair,
    resume_problem,
    starting_weights,
    weights_digest,
)
from medsr.train.steps import AdversarialStep, CudaGraphStep, SupervisedStep

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict]
    best: dict


def generator_kwargs(config: ExperimentConfig) -> dict:
    kwargs = {"scale": config.model.scale, "blocks": config.model.blocks, "channels": config.model.channels}
    if config.model.upsample_skip:
        kwargs["upsample_skip"] = True
    return kwargs


@torch.inference_mode()
def score(
    generator: nn.Module, images: ScoringSet, device: torch.device, batch_size: int = 8
) -> dict[str, float]:
    """Mean PSNR and SSIM of ``generator`` on whole images (eval mode, outputs clipped to [0, 1])."""
    was_training = generator.training
    generator.eval()
    values = {"psnr": [], "ssim": []}
    for chunk in batches_by_shape(images.lq, batch_size):
        lq = torch.from_numpy(np.stack([images.lq[i] for i in chunk]))[:, None].to(device)
        sr = generator(lq).float().clamp_(0, 1).cpu().numpy()
        for i, out in zip(chunk, sr):
            values["psnr"].append(psnr(out[0], images.hr[i]))
            values["ssim"].append(ssim(out[0], images.hr[i]))
    generator.train(was_training)
    return {k: float(np.mean(v)) if v else float("nan") for k, v in values.items()}


class EMA:
    """Exponential moving average of a module's parameters (buffers are copied)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        torch._foreach_lerp_(
            list(self.module.parameters()), [p.detach() for p in module.parameters()], 1.0 - self.decay
        )
        for average, current in zip(self.module.buffers(), module.buffers()):
            average.copy_(current)


def dataset_intensity(dataset: str | Path) -> dict:
    """The intensity settings a data set was prepared with (so inference maps values the same way).

    Raises:
        MedsrError: the data set's ``prepare.json`` is missing or lacks them (a checkpoint without
            them would map a scan's values differently at inference).
    """
    import json

    path = Path(dataset) / layout.PREPARE_INFO
    try:
        options = json.loads(path.read_text())["options"]
        return {"ct_window": options["ct_window"], "percentiles": options["percentiles"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = (
            "missing" if isinstance(exc, FileNotFoundError) else f"unreadable ({type(exc).__name__}: {exc})"
        )
        raise MedsrError(
            f"{path}: {reason}; it holds the intensity settings the checkpoint must record "
            "(prepare the data set with medsr prepare)"
        ) from None


#: What a run writes into its folder (removed by ``fit(..., overwrite=True)`` before a fresh start).
RUN_ARTEFACTS = (
    BEST,
    LAST,
    layout.TRAIN_LOG,
    layout.TRAIN_CONFIG,
    layout.CURVES_SSIM,
    layout.CURVES_PSNR,
    layout.TENSORBOARD,
)


def starting_checkpoint(config: ExperimentConfig, *, resume: bool = False) -> dict | None:
    """The checkpoint ``train.init_from`` names, or None. A resumed run whose starting file is gone
    gets None (its own checkpoints record what it started from); a fresh one gets an error."""
    if not config.train.init_from or (resume and not Path(config.train.init_from).is_file()):
        return None
    return read_checkpoint(config.train.init_from)


def run_record(config: ExperimentConfig, start: dict | None, saved: dict | None = None) -> dict:
    """The ``trained_on`` record a run of ``config`` gets: its data set, and ``start``, the checkpoint
    it starts from (``saved``: the run's own record, used when the starting file is gone)."""
    init = None
    if start is not None:
        init = {
            **(start.get("trained_on") or {"unknown": True}),
            "path": str(config.train.init_from),
            "weights": weights_digest(starting_weights(start)),
        }
    elif config.train.init_from and saved is not None:
        init = saved.get("init_from")
    return training_record(config.data.dataset, init_from=init)


def clear_run(run_dir: Path, *, overwrite: bool, keep: str | None = None) -> None:
    """Refuse to train afresh over an earlier run's checkpoints, or (``overwrite``) remove them first,
    so that nothing of the earlier run survives a kill of the new one. ``keep`` (the run's
    ``init_from``) may not be among them."""
    import shutil

    existing = [run_dir / name for name in RUN_ARTEFACTS if (run_dir / name).exists()]
    if not existing:
        return
    if keep is not None and any(Path(keep).resolve() == p.resolve() for p in existing):
        raise MedsrError(
            f"train.init_from: {keep} is a checkpoint of the run in {run_dir}, which a fresh run would remove; "
            "copy it elsewhere or train into another run_dir"
        )
    if not overwrite and any(p.name in (BEST, LAST) for p in existing):
        raise MedsrError(
            f"{run_dir} already holds a run ({', '.join(p.name for p in existing if p.suffix == '.pt')}); "
            "resume it (--resume), train into another run_dir, or replace it (--overwrite)"
        )
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _amp_dtype(config: ExperimentConfig, device: torch.device) -> torch.dtype | None:
    if config.train.amp == "bf16" or (config.train.amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _is_better(row: dict, best: dict) -> bool:
    if not best:
        return True
    return (row["val_ssim"], row["val_psnr"]) > (best["val_ssim"], best["val_psnr"])


@dataclass
class Networks:
    """What one run trains: the generator (its EMA), the discriminator and perceptual loss of the
    adversarial stage, and their optimisers."""

    generator: nn.Module
    opt_g: torch.optim.Optimizer
    channels_last: bool
    use_graph: bool
    ema: EMA | None = None
    discriminator: nn.Module | None = None  # unwrapped (no DDP, no compile)
    opt_d: torch.optim.Optimizer | None = None
    perceptual: nn.Module | None = None


def resumption(
    config: ExperimentConfig, run_dir: Path, device: str | torch.device = "cpu"
) -> tuple[tuple[Path, dict] | None, dict | None, dict | None, str | None]:
    """Whether ``run_dir`` holds a run of ``config`` that can be resumed: (the later of its
    checkpoints, the starting checkpoint, the run's ``trained_on`` record, why it cannot be resumed
    or None); all None when there is nothing to resume."""
    found = latest_checkpoint(run_dir, device)
    if found is None:
        return None, None, None, None
    start = starting_checkpoint(config, resume=True)
    record = run_record(config, start, found[1].get("trained_on"))
    return (
        found,
        start,
        record,
        resume_problem(found[1], config.to_dict(), record) or missing_best(run_dir, found[1]),
    )


def _records(
    config: ExperimentConfig,
    run_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    is_main: bool,
    device: torch.device,
) -> tuple[dict | None, dict, tuple[Path, dict] | None]:
    """(the starting checkpoint, the run's ``trained_on`` record, the checkpoint to resume from)."""
    if resume:
        found, start, record, problem = resumption(config, run_dir, device)
        if found is None:
            raise MedsrError(f"--resume: {run_dir / LAST} does not exist (nothing to resume)")
        if problem is not None:
            raise MedsrError(
                f"--resume: {found[0]} is another run: {problem}; train into a new run_dir instead"
            )
        return start, record, found
    start = starting_checkpoint(config)
    record = run_record(config, start)
    if is_main:
        clear_run(run_dir, overwrite=overwrite, keep=config.train.init_from)
    return start, record, None


def _networks(config: ExperimentConfig, device: torch.device, world: int, start: dict | None) -> Networks:
    """Build the networks and optimisers of ``config`` on ``device``; a fresh run with ``start``
    begins from its generator weights."""
    generator: nn.Module = SRResNet(**generator_kwargs(config)).to(device)
    if start is not None:
        if start["model"]["kwargs"] != generator_kwargs(config):
            raise ConfigError(
                f"train.init_from: {config.train.init_from} is {start['model']['kwargs']}, "
                f"the config asks for {generator_kwargs(config)}"
            )
        generator.load_state_dict(starting_weights(start))
    channels_last = config.train.channels_last == "on" or (
        config.train.channels_last == "auto" and device.type == "cuda"
    )
    if channels_last:
        generator = generator.to(memory_format=torch.channels_last)
    use_graph = (
        config.train.cuda_graph
        and device.type == "cuda"
        and world == 1
        and config.train.stage == "supervised"
    )
    opt_g = torch.optim.Adam(
        generator.parameters(),
        lr=config.train.lr,
        betas=tuple(config.train.betas),
        **({"capturable": True} if use_graph else {"fused": device.type == "cuda"}),
    )
    networks = Networks(
        generator,
        opt_g,
        channels_last,
        use_graph,
        ema=EMA(generator, config.train.ema) if config.train.ema > 0 else None,
    )
    if config.train.stage == "adversarial":
        from medsr.losses import PerceptualLoss

        discriminator = Discriminator(config.adversarial.discriminator).to(device)
        networks.discriminator = (
            discriminator.to(memory_format=torch.channels_last) if channels_last else discriminator
        )
        networks.opt_d = torch.optim.Adam(
            networks.discriminator.parameters(),
            lr=config.adversarial.lr_d,
            betas=tuple(config.train.betas),
            fused=device.type == "cuda",
        )
        networks.perceptual = PerceptualLoss(
            tuple(config.adversarial.content_layer),
            config.adversarial.vgg_weights,
            feature_scale=config.adversarial.vgg_feature_scale,
        ).to(device)
    return networks


def _restore(networks: Networks, checkpoint: dict) -> tuple[list[dict], dict, int]:
    """Load a checkpoint into ``networks`` and the RNG; returns (history, best, first epoch to run)."""
    networks.generator.load_state_dict(checkpoint["model"]["state_dict"])
    networks.opt_g.load_state_dict(checkpoint["optimizers"]["generator"])
    if networks.ema is not None and checkpoint.get("ema") is not None:
        networks.ema.module.load_state_dict(checkpoint["ema"])
    if networks.discriminator is not None:
        networks.discriminator.load_state_dict(checkpoint["discriminator"]["state_dict"])
        networks.opt_d.load_state_dict(checkpoint["optimizers"]["discriminator"])
    torch.set_rng_state(checkpoint["rng"]["torch"].cpu())
    return list(checkpoint["history"]), dict(checkpoint["best"]), int(checkpoint["epoch"]) + 1


def _step(config: ExperimentConfig, networks: Networks, device: torch.device, world: int):
    """The per-iteration step of the stage, on the DDP- and compile-wrapped networks."""

    def wrap(module: nn.Module) -> nn.Module:
        if world > 1:
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[device.index] if device.type == "cuda" else None
            )
        return torch.compile(module) if config.train.compile else module

    amp = _amp_dtype(config, device)
    if config.train.stage == "adversarial":
        return AdversarialStep(
            wrap(networks.generator),
            wrap(networks.discriminator),
            networks.discriminator,
            networks.opt_g,
            networks.opt_d,
            networks.perceptual,
            config.adversarial.adversarial_weight,
            config.adversarial.pixel_weight,
            amp,
        )
    step = SupervisedStep(wrap(networks.generator), networks.opt_g, config.train.pixel_loss, amp)
    return CudaGraphStep(step) if networks.use_graph else step


def _train_epoch(
    step,
    sampler: PatchSampler,
    networks: Networks,
    epoch: int,
    config: ExperimentConfig,
    info: distributed.DistInfo,
    show: bool,
) -> tuple[list[float], int, float]:
    """One pass over the epoch's batches; returns (mean of each of ``step.names``, iterations, seconds)."""
    from tqdm import tqdm

    began = time.perf_counter()
    networks.generator.train()
    sums = {name: torch.zeros((), device=info.device) for name in step.names}
    iterations = sampler.iterations(info.world)
    bar = tqdm(
        total=iterations,
        desc=f"epoch {epoch}/{config.train.epochs}",
        unit="it",
        leave=False,
        disable=not (show and sys.stderr.isatty()),
    )
    for lq, hr in sampler.batches(epoch, config.seed, info.rank, info.world):
        if networks.channels_last:
            lq, hr = (
                lq.contiguous(memory_format=torch.channels_last),
                hr.contiguous(memory_format=torch.channels_last),
            )
        for name, value in step(lq, hr).items():
            sums[name] += value
        if networks.ema is not None:
            networks.ema.update(networks.generator)
        bar.update()
    bar.close()
    means = distributed.all_reduce_mean(
        torch.stack([sums[n] for n in step.names]) / iterations, info.world
    ).tolist()
    return means, iterations, time.perf_counter() - began


def _epoch_row(
    epoch: int, step, means: list[float], scores: dict[str, dict], lr: float, iterations: int, seconds: float
) -> dict:
    """The log row of one epoch: the step's loss terms (and their shares), train and validation scores."""
    named = dict(zip(step.names, means))
    return {
        "epoch": epoch,
        **named,
        "train_psnr": scores["train"]["psnr"],
        "train_ssim": scores["train"]["ssim"],
        "val_psnr": scores["val"]["psnr"],
        "val_ssim": scores["val"]["ssim"],
        "lr": lr,
        "seconds": round(seconds, 3),
        "iterations": iterations,
        "best": 0,
        **step.summarize(named),
    }


def _payload(
    config: ExperimentConfig,
    networks: Networks,
    epoch: int,
    history: list[dict],
    best: dict,
    intensity: dict,
    record: dict,
) -> dict:
    """Everything a checkpoint holds (see ``models.checkpoint``)."""
    discriminator = networks.discriminator
    return {
        "model": model_entry(config.model.name, generator_kwargs(config), networks.generator),
        "ema": unwrap(networks.ema.module).state_dict() if networks.ema is not None else None,
        "discriminator": {
            "variant": config.adversarial.discriminator,
            "state_dict": unwrap(discriminator).state_dict(),
        }
        if discriminator is not None
        else None,
        "optimizers": {
            "generator": networks.opt_g.state_dict(),
            **({"discriminator": networks.opt_d.state_dict()} if networks.opt_d else {}),
        },
        "config": config.to_dict(),
        "epoch": epoch,
        "history": history,
        "best": best,
        "intensity": intensity,
        "trained_on": record,
        "rng": {"torch": torch.get_rng_state()},
    }


def _say_epoch(config: ExperimentConfig, row: dict, iterations: int, seconds: float) -> None:
    shares = "".join(f", {k[:-6]} {100 * v:.1f}%" for k, v in row.items() if k.endswith("_share") and v == v)
    loss = row.get("loss", float("nan"))
    print(
        f"epoch {row['epoch']}/{config.train.epochs}: loss {loss:.5f}{shares}, val PSNR {row['val_psnr']:.2f} dB, "
        f"SSIM {row['val_ssim']:.4f}{' (best)' if row['best'] else ''}, {iterations / seconds:.1f} it/s",
        file=sys.stderr,
    )


@dataclass
class _Book:
    """Rank 0's bookkeeping of a run: the scoring sets, the log, the history and best epoch, and what
    every checkpoint records (the data set's intensity settings and ``trained_on``)."""

    run_dir: Path
    scoring: dict[str, ScoringSet]
    log: RunLog
    intensity: dict
    record: dict
    history: list[dict]
    best: dict

    @classmethod
    def open(
        cls, config: ExperimentConfig, degradation, record: dict, history: list[dict], best: dict
    ) -> "_Book":
        """Build the scoring sets, write ``config.yaml`` and open the log (rank 0 only)."""
        dataset, seed = config.data.dataset, config.seed
        scoring = {
            "val": scoring_set(dataset, "val", degradation, seed, config.data.val_limit),
            "train": scoring_set(dataset, "train", degradation, seed, config.data.train_metric_images),
        }
        if not scoring["val"].ids:
            raise MedsrError(f"{dataset}: no validation image to select the best epoch with")
        run_dir = Path(config.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / layout.TRAIN_CONFIG, dump_config(config))
        return cls(run_dir, scoring, RunLog(run_dir), dataset_intensity(dataset), record, history, best)

    def close_epoch(
        self,
        config: ExperimentConfig,
        networks: Networks,
        step,
        epoch: int,
        means: list[float],
        iterations: int,
        seconds: float,
        device: torch.device,
    ) -> dict:
        """Score the epoch, keep its row, write ``best.pt`` (when best, first) and ``last.pt`` and the log."""
        scored = networks.ema.module if networks.ema is not None else networks.generator
        scores = {name: score(scored, images, device) for name, images in self.scoring.items()}
        row = _epoch_row(
            epoch, step, means, scores, networks.opt_g.param_groups[0]["lr"], iterations, seconds
        )
        if _is_better(row, self.best):
            row["best"] = 1
            self.best = {k: row[k] for k in ("epoch", "val_psnr", "val_ssim")}
        self.history.append(row)
        payload = _payload(config, networks, epoch, self.history, self.best, self.intensity, self.record)
        if row["best"]:  # best first: see train.resume
            save_checkpoint(self.run_dir / BEST, payload)
        save_checkpoint(self.run_dir / LAST, payload)
        self.log.write(self.history)
        return row


def fit(
    config: ExperimentConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    after_epoch: Callable[[int, dict], None] | None = None,
) -> FitResult:
    """Train as ``config`` says; see the module docstring.

    Args:
        config: a validated experiment config.
        resume: continue the run in ``run_dir`` (an error if there is none, or if it is another run:
            other data set, model, stage or settings; see ``train.resume``).
        overwrite: for a fresh run, remove an earlier run's checkpoints and logs in ``run_dir``
            first (without it, an earlier run there is an error).
        progress: show a progress bar and one line per epoch on stderr (rank 0).
        after_epoch: called on rank 0 after each epoch's checkpoint with (epoch, log row).

    Raises:
        MedsrError / ConfigError: bad data set, missing checkpoint, bad init_from, a resume of
            another run, a fresh run over an earlier one.
    """
    info = distributed.setup(config.train.device)
    run_dir = Path(config.run_dir)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.seed)
    degradation = degradation_of(config)
    start, record, resume_from = _records(
        config, run_dir, resume=resume, overwrite=overwrite, is_main=info.is_main, device=info.device
    )
    networks = _networks(config, info.device, info.world, None if resume else start)
    history, best, first_epoch = [], {}, 1
    if resume_from is not None:
        if info.is_main:
            repair_pair(run_dir, *resume_from)
        history, best, first_epoch = _restore(networks, resume_from[1])
    step = _step(config, networks, info.device, info.world)
    sampler = PatchSampler(
        config.data.dataset,
        patch_size=config.data.patch_size,
        batch_size=config.data.batch_size,
        patches_per_image=config.data.patches_per_image,
        augment=config.data.augment,
        degradation=degradation,
        device=info.device,
    )
    book = _Book.open(config, degradation, record, history, best) if info.is_main else None
    for epoch in range(first_epoch, config.train.epochs + 1):
        means, iterations, seconds = _train_epoch(
            step, sampler, networks, epoch, config, info, progress and info.is_main
        )
        if book is not None:
            row = book.close_epoch(config, networks, step, epoch, means, iterations, seconds, info.device)
            if progress:
                _say_epoch(config, row, iterations, seconds)
            if after_epoch is not None:
                after_epoch(epoch, row)
        distributed.barrier(info.world)
    if book is not None:
        book.log.close()
        history, best = book.history, book.best
    distributed.cleanup()
    return FitResult(run_dir, history, best)
