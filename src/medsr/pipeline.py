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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from medsr.errors import ConfigError, MedsrError
from medsr.fsutil import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

STAGES = ("data", "prepare", "baselines", "srresnet", "srgan", "evaluate", "report")


@dataclass
class DataSection:
    source: Literal["sample", "folder", "tcia"] = "sample"
    path: str | None = None  # folder: the DICOM/NIfTI tree
    collection: str = "CPTAC-GBM"  # tcia
    modality: str | None = None  # tcia
    max_series: int | None = None  # tcia
    api: str | None = None  # tcia: NBIA API base URL (default: TCIA's public one)


@dataclass
class PrepareSection:
    size: str = "512"  # exact square size, or "any"
    min_size: int = 64
    sigma: float = 5.0
    keep: str = "above-mean"
    split: str = "1000,200,200"
    stratify: str = "auto"  # auto (modality when there are several and the split is fractions) | modality | none
    patient_id: str = "auto"  # auto | dicom | folder | file | regex:PATTERN (medsr.data.patients)
    score: str = "equation-1"  # detail score: equation-1 | original-code
    seed: int = 0
    axes: str = "axial"
    ct_window: list[float] | str = field(default_factory=lambda: [-1024.0, 3071.0])
    percentiles: list[float] = field(default_factory=lambda: [0.0, 100.0])


@dataclass
class EvaluateSection:
    degradation: Literal["bicubic", "kspace", "blur-noise"] = "bicubic"
    scale: int = 4
    baseline: str = "bicubic"
    seed: int = 0
    figures: int = 2


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


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run config (unknown keys and wrong types name the key)."""
    from medsr.train.config import build_dataclass, read_yaml_mapping  # one reader and validator for every config

    config = build_dataclass(RunConfig, read_yaml_mapping(path))
    if config.data.source == "folder" and not config.data.path:
        raise ConfigError("data.path: needed when data.source is folder")
    prepare_options(config.prepare)
    return config


def prepare_options(section: PrepareSection):
    """The ``PrepareOptions`` of a run config's ``prepare`` section, validated.

    Raises:
        ConfigError: naming the section and the problem.
    """
    from medsr.data.patients import PatientRule
    from medsr.data.prepare import KeepRule, PrepareOptions, check_options, parse_size
    from medsr.data.split import SplitSpec
    from medsr.io.intensity import policy_from_dict
    from medsr.io.volume import parse_axes

    try:
        options = PrepareOptions(
            size=parse_size(section.size), min_size=section.min_size, sigma=section.sigma,
            keep=KeepRule.parse(section.keep), split=SplitSpec.parse(section.split), stratify=section.stratify,
            patients=PatientRule.parse(section.patient_id), score=section.score, seed=section.seed,
            axes=parse_axes(section.axes),
            intensity=policy_from_dict({"ct_window": section.ct_window, "percentiles": section.percentiles}),
        )
        check_options(options)
    except (ValueError, MedsrError) as exc:
        raise ConfigError(f"prepare: {exc}") from None
    return options


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
    """Runs the stages of one ``RunConfig`` in order, skipping the finished ones."""

    def __init__(self, config: RunConfig, *, force_from: str | None = None, progress: bool = True) -> None:
        if force_from is not None and force_from not in STAGES:
            raise MedsrError(f"--from: unknown stage {force_from!r}; stages: {', '.join(STAGES)}")
        self.config, self.progress = config, progress
        self.run_dir = Path(config.run_dir)
        self.forced = set(STAGES[STAGES.index(force_from):]) if force_from else set()
        self.records: dict[str, StageRecord] = {}

    # ------------------------------------------------------------------ bookkeeping
    def _record_path(self, stage: str) -> Path:
        return self.run_dir / "stages" / f"{stage}.json"

    def _previous(self, stage: str) -> StageRecord | None:
        path = self._record_path(stage)
        if not path.is_file():
            return None
        try:
            return StageRecord(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            return None

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    def stage(self, name: str, section: object, work: Callable[[], tuple[list[Path], dict]]) -> StageRecord:
        upstream = [self.records[s].fingerprint for s in STAGES[: STAGES.index(name)] if s in self.records]
        fingerprint = _fingerprint(name, asdict(section) if hasattr(section, "__dataclass_fields__") else section, upstream)
        previous = self._previous(name)
        if (name not in self.forced and previous is not None and previous.fingerprint == fingerprint
                and all((self.run_dir / o).exists() for o in previous.outputs)):
            self._say(f"[{name}] up to date, skipped")
            self.records[name] = previous
            return previous
        self._say(f"[{name}] running")
        for later in STAGES[STAGES.index(name):]:  # an interrupted stage, and all after it, must not look finished
            self._record_path(later).unlink(missing_ok=True)
        began = time.perf_counter()
        outputs, info = work()
        record = StageRecord(name, fingerprint, round(time.perf_counter() - began, 1),
                             [str(Path(o).relative_to(self.run_dir)) if Path(o).is_relative_to(self.run_dir) else str(o) for o in outputs], info)
        atomic_write_json(self._record_path(name), asdict(record))
        self.records[name] = record
        self._say(f"[{name}] done in {record.seconds:.1f} s")
        return record

    # ------------------------------------------------------------------ stages
    def run(self) -> Path:
        config = self.config
        trainings = {"srresnet": self._train_config("srresnet", config.srresnet, None)}  # validated before any work
        if config.srgan.enabled:
            trainings["srgan"] = self._train_config("srgan", config.srgan, self.run_dir / "srresnet" / "best.pt")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "run_config.yaml", yaml.safe_dump(asdict(config), sort_keys=False))
        self.stage("data", {**asdict(config.data), "content": self._source_listing()}, self._data)
        self.stage("prepare", config.prepare, self._prepare)
        self.stage("baselines", config.evaluate, self._baselines)
        for name, training in trainings.items():  # the resolved config (file contents and overrides) is the input
            self.stage(name, training.to_dict(), lambda name=name, training=training: self._train(name, training))
        self.stage("evaluate", config.evaluate, self._evaluate)
        self.stage("report", {}, self._report)
        return self.run_dir / "report.html"

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
            from medsr.data.sample import SOURCES_CSV, fetch_samples

            folder = fetch_samples(progress=self.progress and sys.stderr.isatty())
            return [folder / SOURCES_CSV], {"folder": str(folder), "kind": "sample"}
        if data.source == "folder":
            folder = Path(data.path)
            if not folder.exists():
                raise MedsrError(f"data.path: {folder} does not exist")
            return [folder], {"folder": str(folder), "kind": "folder"}
        from medsr.data.tcia import DEFAULT_API, NbiaClient, fetch_collection

        out = self.run_dir / "tcia"
        report = fetch_collection(NbiaClient(data.api or DEFAULT_API), data.collection, out, modality=data.modality,
                                  max_series=data.max_series, progress=self.progress and sys.stderr.isatty())
        if report.failed:
            self._say(f"[data] {len(report.failed)} series failed to download; continuing with the others")
        return [out], {"folder": str(out / data.collection), "kind": "tcia", "failed_series": len(report.failed)}

    def _prepare(self) -> tuple[list[Path], dict]:
        from medsr.data.prepare import prepare

        options = prepare_options(self.config.prepare)
        folder = Path(self.records["data"].info["folder"])
        result = prepare([folder], self.run_dir / "dataset", options, progress=self.progress and sys.stderr.isatty())
        self._say(f"[prepare] {result.summary_line()}")
        for warning in result.warnings:
            self._say(f"[prepare] warning: {warning}")
        return [self.run_dir / "dataset" / "manifest.csv"], {"slices": len(result.records)}

    def _evaluation(self, split: str, models: list, out: Path, figures: int, *, save_outputs: bool = False) -> tuple[list[Path], dict]:
        from medsr.data.degrade import Degradation
        from medsr.evaluate import EvalOptions, evaluate

        section = self.config.evaluate
        options = EvalOptions(split=split, degradation=Degradation(section.degradation, section.scale),
                              baseline=section.baseline, seed=section.seed, n_figures=figures, save_outputs=save_outputs)
        evaluate(self.run_dir / "dataset", models, out, options, progress=self.progress and sys.stderr.isatty())
        outputs = [out / "summary.json", out / "table.md"]
        return outputs + [out / "outputs" / "index.csv"] if save_outputs else outputs, {}

    def _baselines(self) -> tuple[list[Path], dict]:
        from medsr.models import load_model
        from medsr.models.interpolation import INTERPOLATIONS

        scale = self.config.evaluate.scale
        return self._evaluation("val", [load_model(n, scale=scale) for n in INTERPOLATIONS], self.run_dir / "table1-val", 0)

    def _train_config(self, name: str, section: TrainSection, init_from: Path | None):
        """The validated experiment config of a training stage (its file, its overrides, this run's paths)."""
        from medsr.train.config import load_config

        overrides = [*section.set, f"data.dataset={self.run_dir / 'dataset'}", f"run_dir={self.run_dir / name}", f"name={name}"]
        if init_from is not None:
            overrides.append(f"train.init_from={init_from}")
        return load_config(section.config, overrides)

    def _train(self, name: str, config) -> tuple[list[Path], dict]:
        from medsr.train.loop import fit

        run_dir = Path(config.run_dir)
        resume = self._resumable(name, run_dir, config)
        result = fit(config, resume=resume, overwrite=not resume, progress=self.progress)
        return [run_dir / "best.pt", run_dir / "log.csv"], {"best": result.best, "epochs": config.train.epochs,
                                                            "model": config.model.__dict__}

    def _resumable(self, name: str, run_dir: Path, config) -> bool:
        """Whether the stage's earlier, unfinished training is the same run (then it resumes);
        otherwise say why it starts afresh (``fit`` removes the old checkpoints first)."""
        from medsr.train.loop import run_record, starting_checkpoint
        from medsr.train.resume import latest_checkpoint, missing_best, resume_problem

        found = latest_checkpoint(run_dir)
        if found is None:
            return False
        if name in self.forced:
            self._say(f"[{name}] --from {name}: starting afresh (the earlier checkpoints are removed)")
            return False
        record = run_record(config, starting_checkpoint(config, resume=True), found[1].get("trained_on"))
        problem = resume_problem(found[1], config.to_dict(), record) or missing_best(run_dir, found[1])
        if problem is not None:
            self._say(f"[{name}] inputs changed ({problem}): starting afresh (the earlier checkpoints are removed)")
            return False
        self._say(f"[{name}] resuming from {found[0]}")
        return True

    def _evaluate(self) -> tuple[list[Path], dict]:
        from medsr.models import load_model
        from medsr.models.interpolation import INTERPOLATIONS

        scale = self.config.evaluate.scale
        models = [load_model(n, scale=scale) for n in INTERPOLATIONS if n != "lanczos"]
        for name in ("srresnet", "srgan"):
            if name in self.records:
                models.append(load_model(self.run_dir / name / "best.pt", scale=scale))
        # the test reconstructions are kept: `medsr mos create RUN/eval-test` builds a reader study from them
        return self._evaluation("test", models, self.run_dir / "eval-test", self.config.evaluate.figures, save_outputs=True)

    def _report(self) -> tuple[list[Path], dict]:
        from medsr.report.html import write_report

        stage_seconds = {name: record.seconds for name, record in self.records.items()}
        paths = write_report(self.run_dir, self.config, stage_seconds)
        return paths, {}


def run_pipeline(config_path: str | Path, *, force_from: str | None = None, progress: bool = True) -> Path:
    """Run (or continue) the experiment of ``config_path``; returns the path of report.html."""
    return Pipeline(load_run_config(config_path), force_from=force_from, progress=progress).run()
