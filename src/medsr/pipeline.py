"""``medsr run CONFIG``: the paper's whole experiment, stage by stage, resumable.

Stages: data (sample data, a local folder, or a TCIA download) -> prepare -> baselines on the
validation split (Table 1) -> SRResNet -> SRGAN -> evaluation on the test split (Table 2) -> report.
Each finished stage writes ``RUN/stages/<stage>.json`` with a fingerprint of its inputs (its config
section and the fingerprints of the stages before it); a stage whose record matches and whose
outputs exist is skipped, so an interrupted run continues where it stopped (training resumes from
its ``last.pt``). ``--from STAGE`` forces that stage and every later one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from medsr import layout
from medsr.choices import (
    DATA_SOURCES,
    DEFAULT_METRICS,
    DEGRADATION_KINDS,
    DETAIL_SCORES,
    INTERPOLATIONS,
    NOISES,
    STAGES,
    STRATIFY,
    TAPERS,
)
from medsr.errors import ConfigError, MedsrError
from medsr.fsutil import atomic_write_json, atomic_write_text, sha256_file

if TYPE_CHECKING:
    from medsr.data.prepare import PrepareOptions
    from medsr.evaluate import EvalOptions
    from medsr.train.config import ExperimentConfig

log = logging.getLogger(__name__)

__all__ = [
    "STAGES",
    "Pipeline",
    "RunConfig",
    "evaluate_options",
    "load_run_config",
    "prepare_options",
    "resolve_run_config",
    "run_pipeline",
    "training_configs",
]


@dataclass
class DataSection:
    source: Literal[DATA_SOURCES] = "sample"
    path: str | None = None  # folder: the DICOM/NIfTI tree
    collection: str = "CPTAC-GBM"  # tcia
    modality: str | None = None  # tcia
    max_series: int | None = None  # tcia
    api: str | None = None  # tcia: NBIA API base URL (default: TCIA's public one)


@dataclass
class PrepareSection:
    """The ``prepare:`` section: the keys of ``PrepareOptions.describe()``, as text and numbers.

    The defaults are ``PrepareOptions``' own (tests/test_cli.py holds them equal); see there why."""

    size: int | str = "512"  # exact square size, or "any"
    min_size: int = 64
    sigma: float = 5.0
    keep: str = "above-mean"  # above-mean | all | top:N | min:X
    split: str = "0.7,0.15,0.15"  # fractions train,val,test, or counts (the paper's 1000,200,200)
    stratify: Literal[STRATIFY] = (
        "auto"  # auto (modality when there are several and the split is fractions) | modality | none
    )
    patient_id: str = "auto"  # auto | dicom | folder | file | regex:PATTERN (medsr.data.patients)
    score: Literal[DETAIL_SCORES] = "equation-1"  # detail score: equation-1 | original-code
    seed: int = 0
    axes: str | list[str] = "axial"  # axial, coronal, sagittal (comma-separated or a list), or all
    ct_window: list[float] | str = field(
        default_factory=lambda: [-1024.0, 3071.0]
    )  # [LO, HI] in HU, range or stored
    percentiles: list[float] = field(default_factory=lambda: [0.0, 100.0])


@dataclass
class EvaluateSection:
    """The ``evaluate:`` section: the protocol of both evaluations of a run (the baselines on the
    validation split, every method on the test split). Each key sets the ``Degradation`` or
    ``EvalOptions`` field of ``medsr evaluate``'s flag of the same name, with its default."""

    degradation: Literal[DEGRADATION_KINDS] = "bicubic"  # Degradation.kind
    scale: int = 4
    taper: Literal[TAPERS] = "none"  # kspace window
    tukey_alpha: float = 0.5  # kspace with taper tukey: fraction of the window that is tapered
    noise: Literal[NOISES] = "gaussian"  # blur-noise noise model
    noise_level: float = 0.01  # blur-noise: noise standard deviation on [0, 1]
    blur_sigma: float | None = None  # blur-noise: Gaussian sigma in HR pixels (None: scale / 2)
    baseline: str = "bicubic"  # an interpolation method (both evaluations score them)
    seed: int = 0
    crop_border: int = 0
    figures: int = (
        2  # EvalOptions.n_figures of the test evaluation (the most detailed images); the baselines get none
    )
    metrics: str = ",".join(DEFAULT_METRICS)  # EvalOptions.metrics: psnr, ssim, ms_ssim, ..., lpips


@dataclass
class TrainSection:
    config: str = "configs/paper_srresnet.yaml"
    set: list[str] = field(default_factory=list)  # --set overrides
    enabled: bool = True


@dataclass
class RunConfig:
    name: str = "experiment"
    run_dir: str = "runs/experiment"
    description: str = ""
    data: DataSection = field(default_factory=DataSection)
    prepare: PrepareSection = field(default_factory=PrepareSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    srresnet: TrainSection = field(default_factory=TrainSection)
    srgan: TrainSection = field(default_factory=lambda: TrainSection(config="configs/paper_srgan.yaml"))
    # pretrained models (built-in names such as medsr-x4, or .safetensors / .onnx / .pt files) scored
    # beside the run's own networks on the test split (inference only; the held-out check applies)
    pretrained: list[str] = field(default_factory=list)


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run config: unknown keys and wrong types name the key, and every
    section (data, prepare, evaluate, both training configs) is checked before any work starts.

    Raises:
        ConfigError: naming the section or key and the problem.
    """
    from medsr.train.config import (
        build_dataclass,
        read_yaml_mapping,
    )  # one reader and validator for every config

    config = build_dataclass(RunConfig, read_yaml_mapping(path))
    resolve_run_config(config)
    return config


def resolve_run_config(config: RunConfig) -> tuple[PrepareOptions, EvalOptions, dict[str, ExperimentConfig]]:
    """The validated options of every section of a run config: prepare's, evaluate's (see
    ``evaluate_options``) and the experiment config of each enabled training stage.

    Raises:
        ConfigError: naming the section and the problem (also a network whose scale is not the
            evaluation's, which would only fail after its training).
    """
    if config.data.source == "folder" and not config.data.path:
        raise ConfigError("data.path: needed when data.source is folder")
    preparation = prepare_options(config.prepare)
    evaluation = evaluate_options(config.evaluate)
    trainings = training_configs(config)
    _check_pretrained(config.pretrained, [*INTERPOLATIONS, *trainings])
    for name, training in trainings.items():
        if training.model.scale != evaluation.degradation.scale:
            raise ConfigError(
                f"{name}: the model is x{training.model.scale} but evaluate.scale is {evaluation.degradation.scale}"
            )
    return preparation, evaluation, trainings


def _check_pretrained(models: list[str], taken: list[str]) -> None:
    """No ``pretrained`` entry may share its method name with a baseline, a training stage or another
    entry (the tables key methods by name): a built-in's name is itself, a ``.safetensors`` file's is
    in its metadata; other files are named when the evaluation loads them. (That the models exist
    is checked when a run is to reach its evaluation: ``_pretrained_identity``.)"""
    names = list(taken)
    for index, model in enumerate(models):
        name = _method_name(model, f"pretrained[{index}]")
        if name in names:
            raise ConfigError(f"pretrained[{index}]: {model!r} is already a method of this run ({name})")
        names.append(name)


def _method_name(model: str, key: str) -> str:
    """The name a pretrained model will have in the tables, where it can be told without loading it."""
    from medsr.models.builtin import SUFFIX, read_metadata

    if model.lower().endswith(SUFFIX) and Path(model).is_file():
        try:
            return str(read_metadata(model)["name"])
        except MedsrError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return model


def _pretrained_identity(models: list[str]) -> list[str]:
    """What the evaluation stage's record keeps of its pretrained models: each name or path with
    its file's SHA-256, so that new weights under the same name re-run the stage.

    Raises:
        ConfigError: an entry that is neither a built-in model nor a file.
    """
    from medsr.models.builtin import builtin_names, builtin_path

    identity = []
    for index, model in enumerate(models):
        path = builtin_path(model) if model in builtin_names() else Path(model)
        if not path.is_file():
            known = ", ".join(builtin_names()) or "none installed"
            raise ConfigError(
                f"pretrained[{index}]: {model!r} is neither a built-in model ({known}) nor a model file"
            )
        identity.append(f"{model} sha256:{sha256_file(path)}")
    return identity


def prepare_options(section: PrepareSection) -> PrepareOptions:
    """The ``PrepareOptions`` of a run config's ``prepare`` section, validated.

    Raises:
        ConfigError: naming the section and the problem.
    """
    from medsr.data.prepare import PrepareOptions, check_options

    try:
        options = PrepareOptions.from_description(asdict(section))
        check_options(options)
    except (ValueError, MedsrError) as exc:
        raise ConfigError(f"prepare: {exc}") from None
    return options


def evaluate_options(section: EvaluateSection) -> EvalOptions:
    """The ``EvalOptions`` of a run config's ``evaluate`` section (split ``test``; the stages set
    the split, the figures and the saved outputs of each evaluation), validated.

    Raises:
        ConfigError: naming the key and the problem.
    """
    from medsr.data.degrade import degradation_from
    from medsr.evaluate import EvalOptions
    from medsr.metrics.registry import parse_metrics

    if section.baseline not in INTERPOLATIONS:
        raise ConfigError(
            f"evaluate.baseline: must be one of {', '.join(INTERPOLATIONS)}, got {section.baseline!r}"
        )
    for key in ("crop_border", "figures"):
        if getattr(section, key) < 0:
            raise ConfigError(f"evaluate.{key}: must be at least 0, got {getattr(section, key)}")
    try:
        degradation = degradation_from(section)
        metrics = parse_metrics(section.metrics)
    except (ValueError, MedsrError) as exc:
        raise ConfigError(f"evaluate: {exc}") from None
    return EvalOptions(
        metrics=metrics,
        degradation=degradation,
        baseline=section.baseline,
        seed=section.seed,
        crop_border=section.crop_border,
        n_figures=section.figures,
    )


def training_configs(config: RunConfig) -> dict[str, ExperimentConfig]:
    """The validated experiment config of each enabled training stage: its file, its ``set``
    overrides, and this run's paths (SRGAN starts from the SRResNet's best checkpoint).

    Raises:
        ConfigError: a config that does not load, or SRGAN enabled without SRResNet.
    """
    run_dir = Path(config.run_dir)
    trainings = {}
    if config.srresnet.enabled:
        trainings[layout.SRRESNET] = _training_config(run_dir, layout.SRRESNET, config.srresnet, None)
    if config.srgan.enabled:
        if not config.srresnet.enabled:
            raise ConfigError(
                "srgan.enabled: SRGAN starts from the SRResNet's weights; enable srresnet or disable srgan"
            )
        best = layout.run_training(run_dir, layout.SRRESNET) / layout.BEST_CHECKPOINT
        trainings[layout.SRGAN] = _training_config(run_dir, layout.SRGAN, config.srgan, best)
    return trainings


def _training_config(
    run_dir: Path, name: str, section: TrainSection, init_from: Path | None
) -> ExperimentConfig:
    from medsr.train.config import load_config

    overrides = [
        *section.set,
        f"data.dataset={layout.run_dataset(run_dir)}",
        f"run_dir={layout.run_training(run_dir, name)}",
        f"name={name}",
    ]
    if init_from is not None:
        overrides.append(f"train.init_from={init_from}")
    try:
        return load_config(section.config, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StageRecord:
    stage: str
    fingerprint: str
    seconds: float
    outputs: list[str]
    info: dict = field(default_factory=dict)


class Pipeline:
    """Runs the stages of one ``RunConfig`` in order, skipping the finished ones.

    Every section is validated on construction, before any stage runs."""

    def __init__(self, config: RunConfig, *, force_from: str | None = None, progress: bool = True) -> None:
        if force_from is not None and force_from not in STAGES:
            raise MedsrError(f"--from: unknown stage {force_from!r}; stages: {', '.join(STAGES)}")
        self.prepare_options, self.evaluate_options, self.trainings = resolve_run_config(config)
        self.config, self.progress = config, progress
        self.run_dir = Path(config.run_dir)
        self.forced = set(STAGES[STAGES.index(force_from) :]) if force_from else set()
        self.records: dict[str, StageRecord] = {}

    # ------------------------------------------------------------------ bookkeeping
    def _previous(self, stage: str) -> StageRecord | None:
        path = layout.stage_record(self.run_dir, stage)
        if not path.is_file():
            return None
        try:
            return StageRecord(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            return None

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    def _bars(self) -> bool:
        """Whether the library's progress bars are shown (progress wanted and stderr a terminal)."""
        return self.progress and sys.stderr.isatty()

    def stage(self, name: str, section: object, work: Callable[[], tuple[list[Path], dict]]) -> StageRecord:
        upstream = [self.records[s].fingerprint for s in STAGES[: STAGES.index(name)] if s in self.records]
        fingerprint = _fingerprint(
            name, asdict(section) if hasattr(section, "__dataclass_fields__") else section, upstream
        )
        previous = self._previous(name)
        if (
            name not in self.forced
            and previous is not None
            and previous.fingerprint == fingerprint
            and all((self.run_dir / o).exists() for o in previous.outputs)
        ):
            self._say(f"[{name}] up to date, skipped")
            self.records[name] = previous
            return previous
        self._say(f"[{name}] running")
        for later in STAGES[
            STAGES.index(name) :
        ]:  # an interrupted stage, and all after it, must not look finished
            layout.stage_record(self.run_dir, later).unlink(missing_ok=True)
        began = time.perf_counter()
        outputs, info = work()
        record = StageRecord(
            name,
            fingerprint,
            round(time.perf_counter() - began, 1),
            [
                str(Path(o).relative_to(self.run_dir)) if Path(o).is_relative_to(self.run_dir) else str(o)
                for o in outputs
            ],
            info,
        )
        atomic_write_json(layout.stage_record(self.run_dir, name), asdict(record))
        self.records[name] = record
        self._say(f"[{name}] done in {record.seconds:.1f} s")
        return record

    # ------------------------------------------------------------------ stages
    def run(self, until: str | None = None) -> Path:
        """Run every stage in order, or those up to and including ``until``; returns the report's path
        (which exists only once the report stage ran)."""
        config = self.config
        last = STAGES.index(until) if until is not None else len(STAGES)
        pretrained = _pretrained_identity(config.pretrained) if last >= STAGES.index("evaluate") else []
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / layout.RUN_CONFIG, yaml.safe_dump(asdict(config), sort_keys=False))
        stages: list[tuple[str, object, Callable[[], tuple[list[Path], dict]]]] = [
            ("data", {**asdict(config.data), "content": self._source_listing()}, self._data),
            ("prepare", config.prepare, self._prepare),
            ("baselines", config.evaluate, self._baselines_on_val),
        ]
        for name, training in self.trainings.items():  # the resolved config (file and overrides) is the input
            stages.append((name, training.to_dict(), partial(self._train, name, training)))
        evaluation = {**asdict(config.evaluate), "pretrained": pretrained}
        stages += [("evaluate", evaluation, self._all_methods_on_test), ("report", {}, self._report)]
        for name, section, work in stages:
            if STAGES.index(name) > last:
                break
            self.stage(name, section, work)
        return self.run_dir / layout.REPORT_HTML

    def _source_listing(self) -> str | None:
        """A fingerprint of a local source folder's files (path, size, mtime), so that prepare reruns
        when files are added, removed or changed; None for the other sources."""
        data = self.config.data
        if data.source != "folder" or not Path(data.path).exists():
            return None
        from medsr.io import iter_image_files

        entries = []
        for path in iter_image_files([Path(data.path)]):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((str(path), stat.st_size, stat.st_mtime_ns))
        return _fingerprint(entries)

    def _data(self) -> tuple[list[Path], dict]:
        data = self.config.data
        if data.source == "sample":
            from medsr.data.sample import fetch_samples

            folder = fetch_samples(progress=self._bars())
            return [folder / layout.SAMPLE_SOURCES], {"folder": str(folder), "kind": "sample"}
        if data.source == "folder":
            folder = Path(data.path)
            if not folder.exists():
                raise MedsrError(f"data.path: {folder} does not exist")
            return [folder], {"folder": str(folder), "kind": "folder"}
        from medsr.data.tcia import DEFAULT_API, NbiaClient, fetch_collection

        out = self.run_dir / layout.TCIA_DOWNLOAD
        report = fetch_collection(
            NbiaClient(data.api or DEFAULT_API),
            data.collection,
            out,
            modality=data.modality,
            max_series=data.max_series,
            progress=self._bars(),
        )
        if report.failed:
            self._say(f"[data] {len(report.failed)} series failed to download; continuing with the others")
        return [out], {
            "folder": str(out / data.collection),
            "kind": "tcia",
            "failed_series": len(report.failed),
        }

    def _prepare(self) -> tuple[list[Path], dict]:
        from medsr.data.prepare import prepare

        folder = Path(self.records["data"].info["folder"])
        dataset = layout.run_dataset(self.run_dir)
        result = prepare([folder], dataset, self.prepare_options, progress=self._bars())
        self._say(f"[prepare] {result.summary_line()}")
        for warning in result.warnings:
            self._say(f"[prepare] warning: {warning}")
        return [dataset / layout.MANIFEST], {"slices": len(result.records)}

    def _score_split(self, models: list, out: Path, options: EvalOptions) -> tuple[list[Path], dict]:
        """``medsr evaluate`` of ``models`` on the run's data set (the split and figures of ``options``)
        into ``out``; the shared body of the baselines and the test evaluation."""
        from medsr.evaluate import evaluate

        evaluate(layout.run_dataset(self.run_dir), models, out, options, progress=self._bars())
        outputs = [out / layout.EVAL_SUMMARY, out / layout.EVAL_TABLE]
        if options.save_outputs:
            outputs.append(out / layout.EVAL_OUTPUTS_INDEX)
        return outputs, {}

    def _baselines_on_val(self) -> tuple[list[Path], dict]:
        """Stage ``baselines``: every interpolation method on the validation split (Table 1), no figures."""
        from medsr.models import load_model

        options = replace(self.evaluate_options, split="val", n_figures=0)
        models = [load_model(n, scale=options.degradation.scale) for n in INTERPOLATIONS]
        return self._score_split(models, self.run_dir / layout.BASELINE_EVALUATION, options)

    def _train(self, name: str, config: ExperimentConfig) -> tuple[list[Path], dict]:
        from medsr.train.loop import fit

        run_dir = Path(config.run_dir)
        resume = self._resumable(name, run_dir, config)
        result = fit(config, resume=resume, overwrite=not resume, progress=self.progress)
        return [run_dir / layout.BEST_CHECKPOINT, run_dir / layout.TRAIN_LOG], {
            "best": result.best,
            "epochs": config.train.epochs,
            "model": config.to_dict()["model"],
        }

    def _resumable(self, name: str, run_dir: Path, config: ExperimentConfig) -> bool:
        """Whether the stage's earlier, unfinished training is the same run (then it resumes);
        otherwise say why it starts afresh (``fit`` removes the old checkpoints first)."""
        from medsr.train.loop import resumption

        found, _, _, problem = resumption(config, run_dir)
        if found is None:
            return False
        if name in self.forced:
            self._say(f"[{name}] --from {name}: starting afresh (the earlier checkpoints are removed)")
            return False
        if problem is not None:
            self._say(
                f"[{name}] inputs changed ({problem}): starting afresh (the earlier checkpoints are removed)"
            )
            return False
        self._say(f"[{name}] resuming from {found[0]}")
        return True

    def _all_methods_on_test(self) -> tuple[list[Path], dict]:
        """Stage ``evaluate``: the interpolation methods but Lanczos, the trained networks and the
        ``pretrained`` models on the held-out test split (Table 2), with figures; the reconstructions
        are kept, so that ``medsr mos create RUN/eval-test`` can build a reader study from them."""
        from medsr.models import load_model

        options = replace(self.evaluate_options, split="test", save_outputs=True)
        scale = options.degradation.scale
        models = [load_model(n, scale=scale) for n in INTERPOLATIONS if n != "lanczos"]
        for name in self.trainings:
            if name in self.records:
                models.append(
                    load_model(layout.run_training(self.run_dir, name) / layout.BEST_CHECKPOINT, scale=scale)
                )
        models += [load_model(model, scale=scale) for model in self.config.pretrained]
        return self._score_split(models, self.run_dir / layout.TEST_EVALUATION, options)

    def _report(self) -> tuple[list[Path], dict]:
        from medsr.report.html import write_report

        stage_seconds = {name: record.seconds for name, record in self.records.items()}
        paths = write_report(self.run_dir, self.config, stage_seconds)
        return paths, {}


def run_pipeline(
    config_path: str | Path, *, force_from: str | None = None, until: str | None = None, progress: bool = True
) -> Path:
    """Run (or continue) the experiment of ``config_path``, every stage or those up to ``until``;
    returns the path of report.html."""
    return Pipeline(load_run_config(config_path), force_from=force_from, progress=progress).run(until)
