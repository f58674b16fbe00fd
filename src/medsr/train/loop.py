"""``fit()``: the one training loop for both stages (SRResNet and SRGAN), resumable and distributed.

Per epoch: the step (``SupervisedStep`` or ``AdversarialStep``) runs over the epoch's batches;
then, on rank 0, the generator (its EMA when enabled) is scored on whole validation images
(PSNR, SSIM, exactly as ``medsr evaluate`` scores) and on a few training images (the train curve);
``last.pt`` is written atomically every epoch, ``best.pt`` when the epoch is the best so far by
the paper's rule: highest validation SSIM, ties broken by PSNR (with ``data.train_splits``
holding ``val``, validation scores are in-sample, so every epoch counts as the best: ``best.pt`` is
the last epoch) (``best.pt`` first, so a kill
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
from medsr.models.checkpoint import (
    model_entry,
    network_from,
    read_checkpoint,
    save_checkpoint,
    unwrap,
    weights_digest,
)
from medsr.models.discriminator import Discriminator
from medsr.models.registry import build_network, default_options
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
)
from medsr.train.schedule import Clock, lr_factor, parse_duration, set_lr
from medsr.train.steps import AdversarialStep, CudaGraphStep, SupervisedStep

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict]
    best: dict


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
    """Exponential moving average of a module's parameters (buffers are copied), with a warm-up:
    update n (from 0) uses the decay min(decay, (1 + n) / (10 + n)), as timm and TensorFlow do, so
    that the average does not keep 0.999^n of the initial weights through a short run."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def decay_at(self, n: int) -> float:
        """The decay of update ``n`` (0.1 for the first, so the average starts near the trained weights)."""
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, module: nn.Module, n: int) -> None:
        """Blend ``module``'s parameters in as update ``n`` of the run (the iterations done before it)."""
        torch._foreach_lerp_(
            list(self.module.parameters()), [p.detach() for p in module.parameters()], 1.0 - self.decay_at(n)
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


@dataclass
class Sources:
    """The checkpoints a run learns from besides its data: ``init_from`` (start weights) and
    ``teacher`` (distillation); None when not given, or gone on a resume (its record is in the run's)."""

    start: dict | None = None
    teacher: dict | None = None


def source_checkpoints(config: ExperimentConfig, *, resume: bool = False) -> Sources:
    """The checkpoints ``train.init_from`` and ``train.teacher`` name. A resumed run whose file is
    gone gets None (its own checkpoints record what it learnt from); a fresh one gets an error."""

    def read(path: str | None) -> dict | None:
        if not path or (resume and not Path(path).is_file()):
            return None
        return read_checkpoint(path)

    return Sources(read(config.train.init_from), read(config.train.teacher))


def _source_record(checkpoint: dict | None, path: str | None, saved: dict | None) -> dict | None:
    """The ``trained_on`` entry of a source checkpoint: its own record (or ``unknown``), its path and
    weights digest; ``saved`` (the run's earlier entry) when the file is gone."""
    if checkpoint is not None:
        return {
            **(checkpoint.get("trained_on") or {"unknown": True}),
            "path": str(path),
            "weights": weights_digest(starting_weights(checkpoint)),
        }
    return saved if path else None


def run_record(config: ExperimentConfig, sources: Sources, saved: dict | None = None) -> dict:
    """The ``trained_on`` record a run of ``config`` gets: its data set and the records of the
    checkpoints it starts from and distils from (``saved``: the run's own record, used for a
    source whose file is gone)."""
    saved = saved or {}
    return training_record(
        config.data.dataset,
        fitted=tuple(config.data.train_splits),
        init_from=_source_record(sources.start, config.train.init_from, saved.get("init_from")),
        teacher=_source_record(sources.teacher, config.train.teacher, saved.get("teacher")),
    )


def clear_run(run_dir: Path, *, overwrite: bool, keep: tuple[str | None, ...] = ()) -> None:
    """Refuse to train afresh over an earlier run's checkpoints, or (``overwrite``) remove them first,
    so that nothing of the earlier run survives a kill of the new one. ``keep`` (the run's
    ``init_from`` and ``teacher``) may not be among them."""
    import shutil

    existing = [run_dir / name for name in RUN_ARTEFACTS if (run_dir / name).exists()]
    if not existing:
        return
    for key, path in zip(("train.init_from", "train.teacher"), keep):
        if path is not None and any(Path(path).resolve() == p.resolve() for p in existing):
            raise MedsrError(
                f"{key}: {path} is a checkpoint of the run in {run_dir}, which a fresh run would remove; "
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
    teacher: nn.Module | None = None  # inference form, frozen


def resumption(
    config: ExperimentConfig, run_dir: Path, device: str | torch.device = "cpu"
) -> tuple[tuple[Path, dict] | None, Sources | None, dict | None, str | None]:
    """Whether ``run_dir`` holds a run of ``config`` that can be resumed: (the later of its
    checkpoints, its source checkpoints, the run's ``trained_on`` record, why it cannot be resumed
    or None); all None when there is nothing to resume."""
    found = latest_checkpoint(run_dir, device)
    if found is None:
        return None, None, None, None
    sources = source_checkpoints(config, resume=True)
    record = run_record(config, sources, found[1].get("trained_on"))
    return (
        found,
        sources,
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
) -> tuple[Sources, dict, tuple[Path, dict] | None]:
    """(the source checkpoints, the run's ``trained_on`` record, the checkpoint to resume from)."""
    if resume:
        found, sources, record, problem = resumption(config, run_dir, device)
        if found is None:
            raise MedsrError(f"--resume: {run_dir / LAST} does not exist (nothing to resume)")
        if problem is not None:
            raise MedsrError(
                f"--resume: {found[0]} is another run: {problem}; train into a new run_dir instead"
            )
        return sources, record, found
    sources = source_checkpoints(config)
    check_sources(config, sources)
    record = run_record(config, sources)
    if is_main:
        clear_run(run_dir, overwrite=overwrite, keep=(config.train.init_from, config.train.teacher))
    return sources, record, None


def _same_network(config: ExperimentConfig, checkpoint: dict) -> bool:
    """Whether ``checkpoint``'s generator is the architecture and options ``config`` asks for."""
    entry = checkpoint["model"]
    if entry["name"] != config.model.name:
        return False
    return {**default_options(entry["name"]), **entry["kwargs"]} == config.model.kwargs()


def check_sources(config: ExperimentConfig, sources: Sources) -> None:
    """Refuse a starting checkpoint of another network, and a teacher of another scale, intensity
    mapping or degradation (its outputs would be wrong targets), before anything is removed.

    Raises:
        ConfigError: naming ``train.init_from`` or ``train.teacher`` and what differs.
    """
    if sources.start is not None and not _same_network(config, sources.start):
        entry = sources.start["model"]
        raise ConfigError(
            f"train.init_from: {config.train.init_from} is {entry['name']} {entry['kwargs']}, "
            f"the config asks for {config.model.name} {config.model.kwargs()}"
        )
    teacher = sources.teacher
    if teacher is None:
        return
    entry = teacher["model"]
    scale = {**default_options(entry["name"]), **entry["kwargs"]}["scale"]
    wanted = {
        "scale": (scale, config.model.scale),
        "intensity": (teacher.get("intensity") or None, dataset_intensity(config.data.dataset)),
        "degradation": (
            (teacher.get("config") or {}).get("data", {}).get("degradation"),
            config.to_dict()["data"]["degradation"],
        ),
    }
    for what, (theirs, ours) in wanted.items():
        if theirs != ours:
            raise ConfigError(
                f"train.teacher: {config.train.teacher} was trained with {what} {theirs}, this run uses {ours}"
            )


def _teacher(checkpoint: dict, path: str, device: torch.device) -> nn.Module:
    """The frozen inference form of the ``train.teacher`` checkpoint's network, on ``device``."""
    teacher = network_from(checkpoint, path).inference_form().to(device)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def _networks(
    config: ExperimentConfig, device: torch.device, world: int, sources: Sources, fresh: bool
) -> Networks:
    """Build the networks and optimisers of ``config`` on ``device``; a ``fresh`` run with a
    starting checkpoint begins from its generator weights."""
    generator: nn.Module = build_network(config.model.name, config.model.kwargs()).to(device)
    if fresh and sources.start is not None:  # checked by check_sources
        generator.load_state_dict(starting_weights(sources.start))
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
        # a captured step reads the rate from a tensor (``schedule.set_lr`` updates it in place)
        lr=torch.tensor(config.train.lr, device=device) if use_graph else config.train.lr,
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
    if config.train.teacher is not None and sources.teacher is not None:
        networks.teacher = _teacher(sources.teacher, config.train.teacher, device)
    elif config.train.teacher is not None:
        raise MedsrError(
            f"train.teacher: {config.train.teacher}: no such checkpoint (needed to go on distilling)"
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
    """Load a checkpoint into ``networks`` and the RNG; returns (history, best, first epoch to run)
    (the clock: ``clock_state``)."""
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
            config.train.grad_clip,
        )
    step = SupervisedStep(
        wrap(networks.generator),
        networks.opt_g,
        config.train.pixel_loss,
        amp,
        grad_clip=config.train.grad_clip,
        teacher=networks.teacher,
        distill_weight=config.train.distill_weight,
    )
    return CudaGraphStep(step) if networks.use_graph else step


def make_clock(config: ExperimentConfig, sampler: PatchSampler, info: distributed.DistInfo) -> Clock:
    """The run's clock (limits from ``train.epochs``, ``train.iterations``, ``train.time_budget``)."""
    budget = config.train.time_budget
    return Clock(
        iterations_per_epoch=sampler.iterations(info.world),
        epochs=config.train.epochs,
        iterations=config.train.iterations,
        seconds=parse_duration(budget) if budget is not None else None,
        world=info.world,
        device=info.device,
    )


def clock_state(checkpoint: dict) -> dict:
    """A checkpoint's clock (iterations and training seconds so far); for checkpoints written before
    the clock was kept, summed from the history."""
    if "clock" in checkpoint:
        return dict(checkpoint["clock"])
    history = checkpoint.get("history", [])
    return {
        "iterations": sum(int(r.get("iterations", 0)) for r in history),
        "seconds": sum(float(r.get("seconds", 0.0)) for r in history),
    }


def _apply_schedule(config: ExperimentConfig, networks: Networks, clock: Clock) -> float:
    """Set the optimisers' rates for the clock's progress; returns the generator's rate."""
    factor = lr_factor(
        config.train.schedule, clock.progress(), config.train.warmup, config.train.min_lr / config.train.lr
    )
    set_lr(networks.opt_g, config.train.lr * factor)
    if networks.opt_d is not None:
        set_lr(networks.opt_d, config.adversarial.lr_d * factor)
    return config.train.lr * factor


def _epoch_label(epoch: int, config: ExperimentConfig, clock: Clock) -> str:
    """``epoch 3/12``, or with an iteration or time limit ``epoch 3 (41% of the run)``."""
    if clock.seconds is None and clock.iterations is None:
        return f"epoch {epoch}/{config.train.epochs}"
    return f"epoch {epoch} ({100 * clock.progress():.0f}% of the run)"


def _train_epoch(
    step,
    sampler: PatchSampler,
    networks: Networks,
    epoch: int,
    config: ExperimentConfig,
    info: distributed.DistInfo,
    clock: Clock,
    show: bool,
) -> tuple[list[float], int, float, float]:
    """The epoch's batches until the epoch or the run (``clock``) ends, each at the scheduled rate;
    returns (mean of each of ``step.names``, iterations, seconds, the last rate)."""
    from tqdm import tqdm

    began = time.perf_counter()
    networks.generator.train()
    sums = {name: torch.zeros((), device=info.device) for name in step.names}
    bar = tqdm(
        total=sampler.iterations(info.world),
        desc=_epoch_label(epoch, config, clock),
        unit="it",
        leave=False,
        disable=not (show and sys.stderr.isatty()),
    )
    iterations, lr = 0, config.train.lr
    clock.start()
    for lq, hr in sampler.batches(epoch, config.seed, info.rank, info.world):
        if clock.finished():
            break
        lr = _apply_schedule(config, networks, clock)
        if networks.channels_last:
            lq, hr = (
                lq.contiguous(memory_format=torch.channels_last),
                hr.contiguous(memory_format=torch.channels_last),
            )
        for name, value in step(lq, hr).items():
            sums[name] += value
        if networks.ema is not None:
            networks.ema.update(networks.generator, clock.done)
        clock.tick()
        iterations += 1
        bar.update()
    bar.close()
    clock.sync()  # every process, at the same iteration: the seconds up to the end of the epoch
    means = distributed.all_reduce_mean(
        torch.stack([sums[n] for n in step.names]) / max(iterations, 1), info.world
    ).tolist()
    return means, iterations, time.perf_counter() - began, lr


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
    clock: Clock,
) -> dict:
    """Everything a checkpoint holds (see ``models.checkpoint``)."""
    discriminator = networks.discriminator
    return {
        "model": model_entry(config.model.name, config.model.kwargs(), networks.generator),
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
        "clock": clock.state(),
        "device": str(clock.device or "cpu"),  # where it was trained (the config may say auto)
        "rng": {"torch": torch.get_rng_state()},
    }


def _say_epoch(config: ExperimentConfig, row: dict, iterations: int, seconds: float, clock: Clock) -> None:
    shares = "".join(f", {k[:-6]} {100 * v:.1f}%" for k, v in row.items() if k.endswith("_share") and v == v)
    loss = row.get("loss", float("nan"))
    print(
        f"{_epoch_label(row['epoch'], config, clock)}: loss {loss:.5f}{shares}, val PSNR {row['val_psnr']:.2f} dB, "
        f"SSIM {row['val_ssim']:.4f}{' (best)' if row['best'] else ''}, {iterations / max(seconds, 1e-9):.1f} it/s",
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
        lr: float,
        clock: Clock,
        device: torch.device,
    ) -> dict:
        """Score the epoch, keep its row, write ``best.pt`` (when best, first) and ``last.pt`` and the log."""
        scored = networks.ema.module if networks.ema is not None else networks.generator
        scores = {name: score(scored, images, device) for name, images in self.scoring.items()}
        row = _epoch_row(epoch, step, means, scores, lr, iterations, seconds)
        if _is_better(row, self.best) or "val" in config.data.train_splits:  # in-sample: keep the last
            row["best"] = 1
            self.best = {k: row[k] for k in ("epoch", "val_psnr", "val_ssim")}
        self.history.append(row)
        payload = _payload(
            config, networks, epoch, self.history, self.best, self.intensity, self.record, clock
        )
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
    sources, record, resume_from = _records(
        config, run_dir, resume=resume, overwrite=overwrite, is_main=info.is_main, device=info.device
    )
    networks = _networks(config, info.device, info.world, sources, fresh=resume_from is None)
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
        splits=config.data.train_splits,
    )
    clock = make_clock(config, sampler, info)
    if resume_from is not None:
        saved = clock_state(resume_from[1])
        clock.done, clock.spent = saved["iterations"], saved["seconds"]
    book = _Book.open(config, degradation, record, history, best) if info.is_main else None
    epoch = first_epoch
    while not clock.finished():
        means, iterations, seconds, lr = _train_epoch(
            step, sampler, networks, epoch, config, info, clock, progress and info.is_main
        )
        if book is not None:
            row = book.close_epoch(
                config, networks, step, epoch, means, iterations, seconds, lr, clock, info.device
            )
            if progress:
                _say_epoch(config, row, iterations, seconds, clock)
            if after_epoch is not None:
                after_epoch(epoch, row)
        distributed.barrier(info.world)
        epoch += 1
    if book is not None:
        book.log.close()
        history, best = book.history, book.best
    distributed.cleanup()
    return FitResult(run_dir, history, best)
