"""``medsr mos create``: build a study folder (``medsr.mos.study``) from an evaluation's saved outputs.

Images are rendered once per trial with one region and one window for the original and every
reconstruction, as uncompressed 8-bit PNGs (a size that depends on width and height only), under
random names, written in a random order with one modification time; the hidden original and
repeated images are copies with the lowest bit of 1% of their pixels flipped. ``study.json`` and
``private/`` (which image is which method, which patient) are readable by their owner only.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import shutil
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from medsr import layout
from medsr.errors import MedsrError
from medsr.eval_outputs import INDEX, REFERENCE, SCORE_ID_COLUMNS, read_index
from medsr.fsutil import atomic_write_csv, atomic_write_json, read_csv
from medsr.io.raster import read_png16
from medsr.metrics import body_mask
from medsr.mos.study import (
    CHECK_DEGRADED,
    CHECK_ORIGINAL,
    DEGRADED_CHECK_FAIL_AT_LEAST,
    FORMAT,
    IMAGES,
    METHOD,
    ORIGINAL_CHECK_FAIL_AT_MOST,
    PROVENANCE,
    REPEAT,
    SCALE_LABELS,
    STUDY_FILE,
    CalibrationItem,
    Item,
    Study,
    Trial,
    load_study,
)


@dataclass(frozen=True)
class StudyOptions:
    """How ``medsr mos create`` builds a study (see ``medsr mos create --help``)."""

    methods: tuple[str, ...]
    n_images: int
    baseline: str | None = None  # method the others are compared with; default: the first method
    crop: int = 256  # side of the square region shown, in HR pixels (smaller images are shown whole)
    window_percentiles: tuple[float, float] = (0.5, 99.5)  # display window from the original's region
    check_fraction: float = (
        0.25  # share of trials whose hidden item is an attention check (at least 2); the rest repeat a method
    )
    seed: int = 0
    title: str = "Super-resolution reader study"

    def __post_init__(self) -> None:
        if not self.methods:
            raise MedsrError("--methods: give at least one method")
        if len(set(self.methods)) != len(self.methods):
            raise MedsrError(f"--methods: each method once, got {','.join(self.methods)}")
        if self.n_images < 1:
            raise MedsrError("--images: must be at least 1")
        if self.baseline is not None and self.baseline not in self.methods:
            raise MedsrError(f"--baseline: {self.baseline} is not one of --methods {','.join(self.methods)}")
        if self.crop < 16:
            raise MedsrError("--crop: must be at least 16 pixels")
        low, high = self.window_percentiles
        if not 0 <= low < high <= 100:
            raise MedsrError("--window: percentiles must satisfy 0 <= low < high <= 100")
        if not 0 <= self.check_fraction <= 1:
            raise MedsrError("--check-fraction: must lie in [0, 1]")


def create_study(eval_dir: str | Path, out: str | Path, options: StudyOptions) -> Study:
    """Build a study folder ``out`` from an evaluation run with ``--save-outputs``.

    Images are chosen round-robin over patients (seeded), so a study of N images spreads over as many
    patients as possible; one more image is used for the calibration trial. The folder is assembled
    under a temporary name and renamed into place when complete.

    Raises:
        MedsrError: no saved outputs, a method missing, too few images, or ``out`` already exists.
    """
    eval_dir, out = Path(eval_dir), Path(out)
    if out.exists():
        raise MedsrError(f"{out}: already exists; choose a new study folder")
    files, info = _saved_outputs(eval_dir, options)
    chosen = _spread_over_patients(sorted(files), info, options.n_images + 1, options.seed)
    rng = np.random.default_rng(options.seed)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / IMAGES).mkdir(parents=True)
    try:
        renderer = _Renderer(tmp / IMAGES, options)
        trials, provenance = _render_trials(chosen[1:], files, info, renderer, options, rng)
        calibration, calibration_original, row = _render_calibration(chosen[0], files, info, renderer, rng)
        document = _document(options, eval_dir, trials, calibration, calibration_original)
        document["metrics"] = _metric_table(eval_dir, dict(zip(chosen[1:], trials)), options.methods)
        _seal(tmp, provenance + [row], document, renderer)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_study(out)


def _saved_outputs(
    eval_dir: Path, options: StudyOptions
) -> tuple[dict[str, dict[str, Path]], dict[str, dict]]:
    """{image id: {method or hr: file}} of the images saved with every wanted method, and each image's
    index row (patient, modality).

    Raises:
        MedsrError: no saved outputs, a method missing, or fewer than ``n_images + 1`` images."""
    rows = read_index(eval_dir)
    if rows is None:
        raise MedsrError(
            f"{eval_dir}: no saved reconstructions ({eval_dir / INDEX} missing); "
            "run medsr evaluate with --save-outputs (medsr run keeps them for the test split)"
        )
    files: dict[str, dict[str, Path]] = defaultdict(dict)
    info: dict[str, dict[str, str]] = {}
    for row in rows:
        files[row["image_id"]][row["method"]] = eval_dir / row["file"]
        info[row["image_id"]] = row
    available = sorted({row["method"] for row in rows} - {REFERENCE})
    for method in options.methods:
        if method not in available:
            raise MedsrError(f"--methods: {method} is not in {eval_dir} (it has {', '.join(available)})")
    complete = {i: f for i, f in files.items() if REFERENCE in f and all(m in f for m in options.methods)}
    if len(complete) < options.n_images + 1:
        raise MedsrError(
            f"--images {options.n_images}: {eval_dir} has {len(complete)} images with every method; "
            f"a study needs --images + 1 (one for the calibration trial)"
        )
    return complete, info


def _render_trials(
    image_ids: list[str],
    files: dict,
    info: dict,
    renderer: "_Renderer",
    options: StudyOptions,
    rng: np.random.Generator,
) -> tuple[list[Trial], list[dict[str, str]]]:
    """One trial per image: its original, one item per method and the hidden item; provenance rows."""
    trials, provenance = [], []
    checks_of_trial = _plan_checks(options.n_images, options.check_fraction, rng)
    for number, image_id in enumerate(image_ids):
        image_key = f"image-{number + 1:02d}"
        reference, region, window = renderer.prepare(files[image_id][REFERENCE])
        items = [
            Item(_new_id("i"), renderer.render(files[image_id][m], region, window), METHOD, m)
            for m in options.methods
        ]
        for kind in checks_of_trial[number]:
            items.append(_hidden_item(kind, reference, items, renderer, rng))
        trials.append(Trial(f"t{number + 1:02d}", image_key, renderer.write(reference), tuple(items)))
        provenance.append(_provenance_row(image_key, info[image_id], region, window))
    return trials, provenance


def _render_calibration(
    image_id: str, files: dict, info: dict, renderer: "_Renderer", rng: np.random.Generator
) -> tuple[list[CalibrationItem], str, dict[str, str]]:
    """The calibration trial (a degraded image to score 1, the original to score 5, in random order),
    its original's file name and its provenance row."""
    reference, region, window = renderer.prepare(files[image_id][REFERENCE])
    calibration = [
        CalibrationItem(
            _new_id("c"),
            renderer.write(_blatantly_degraded(reference, rng)),
            1,
            "This image is blocky and noisy: fine structures are lost. That is a poor reconstruction: 1.",
        ),
        CalibrationItem(
            _new_id("c"),
            renderer.write(_hidden_copy(reference)),
            5,
            "This image was the original itself: identical in every detail, so 5. "
            "The better a reconstruction, the higher its score.",
        ),
    ]
    calibration = [calibration[i] for i in rng.permutation(len(calibration))]
    return (
        calibration,
        renderer.write(reference),
        _provenance_row("calibration", info[image_id], region, window),
    )


def _metric_table(eval_dir: Path, trial_of: dict[str, Trial], methods: Sequence[str]) -> dict:
    """Each trial image's automatic scores per method, from the evaluation's metrics.csv (what
    ``medsr mos report`` correlates with the MOS): ``{image_key: {method: {column: value}}}``;
    empty when the evaluation has no metrics.csv."""
    path = eval_dir / layout.EVAL_METRICS
    if not path.is_file():
        return {}
    table: dict[str, dict[str, dict[str, float]]] = {}
    for row in read_csv(path):
        trial = trial_of.get(row["image_id"])
        if trial is not None and row["method"] in methods:
            scores = {c: float(v) for c, v in row.items() if c not in SCORE_ID_COLUMNS}
            table.setdefault(trial.image_key, {})[row["method"]] = scores
    return table


def _document(
    options: StudyOptions,
    eval_dir: Path,
    trials: list[Trial],
    calibration: list[CalibrationItem],
    calibration_original: str,
) -> dict:
    """The contents of ``study.json``."""
    kinds = [i.kind for t in trials for i in t.items]
    return {
        "format": FORMAT,
        "version": 1,
        "study_id": uuid.uuid4().hex,
        "title": options.title,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "methods": list(options.methods),
        "baseline": options.baseline or options.methods[0],
        "scale": {str(k): v for k, v in SCALE_LABELS.items()},
        "attention_checks": {
            "original_fails_at_most": ORIGINAL_CHECK_FAIL_AT_MOST,
            "degraded_fails_at_least": DEGRADED_CHECK_FAIL_AT_LEAST,
            "count": sum(k in (CHECK_ORIGINAL, CHECK_DEGRADED) for k in kinds),
            "repeats": kinds.count(REPEAT),
        },
        "render": {
            "crop": options.crop,
            "window_percentiles": list(options.window_percentiles),
            "format": "8-bit grayscale PNG, uncompressed, no metadata",
            "seed": options.seed,
        },
        "source": {"evaluation": str(eval_dir.resolve()), "protocol": _protocol(eval_dir)},
        "trials": [
            {
                "trial_id": t.trial_id,
                "image_key": t.image_key,
                "original": t.original,
                "items": [item.__dict__ for item in t.items],
            }
            for t in trials
        ],
        "calibration": {"original": calibration_original, "items": [c.__dict__ for c in calibration]},
    }


def _seal(folder: Path, provenance: list[dict[str, str]], document: dict, renderer: "_Renderer") -> None:
    """Write the study's key files and images; make what names methods and patients owner-only."""
    atomic_write_csv(folder / PROVENANCE, list(provenance[0]), provenance)
    atomic_write_json(folder / STUDY_FILE, document)
    renderer.flush()
    _restrict(folder / PROVENANCE)
    (folder / STUDY_FILE).chmod(0o600)  # it says which image is which method
    folder.chmod(0o700)


def _protocol(eval_dir: Path) -> dict:
    """The evaluation's degradation and methods (no data paths), for the record."""
    try:
        protocol = json.loads((eval_dir / layout.EVAL_SUMMARY).read_text())["protocol"]
    except (OSError, ValueError, KeyError):
        return {}
    return {
        key: protocol[key] for key in ("split", "degradation", "scale", "seed", "methods") if key in protocol
    }


def _plan_checks(n_images: int, fraction: float, rng: np.random.Generator) -> dict[int, list[str]]:
    """{trial number: [hidden item kind]}: one hidden item per trial (none when ``fraction`` is 0):
    round(fraction x N) attention checks (at least 2, at most N), alternately the original and the
    degraded image, on random trials; a repeat of a method on the others."""
    if fraction == 0:
        return defaultdict(list)
    count = min(n_images, max(2, round(fraction * n_images)))
    plan: dict[int, list[str]] = defaultdict(lambda: [REPEAT])
    for k, slot in enumerate(rng.permutation(n_images)[:count]):
        plan[int(slot)] = [(CHECK_ORIGINAL, CHECK_DEGRADED)[k % 2]]
    return plan


def _hidden_item(
    kind: str, reference: np.ndarray, items: list[Item], renderer: "_Renderer", rng: np.random.Generator
) -> Item:
    """The hidden item of a trial: the original, a degraded rendering, or a repeat of one of ``items``
    (the methods' items; the copy looks the same but its bytes differ)."""
    if kind == CHECK_ORIGINAL:
        return Item(_new_id("i"), renderer.write(_hidden_copy(reference)), kind)
    if kind == CHECK_DEGRADED:
        return Item(_new_id("i"), renderer.write(_blatantly_degraded(reference, rng)), kind)
    twin = items[int(rng.integers(len(items)))]
    return Item(_new_id("i"), renderer.write(_hidden_copy(renderer.image(twin.file))), REPEAT, twin.method)


def _provenance_row(
    image_key: str, source: dict[str, str], region: tuple[int, int, int, int], window: tuple[float, float]
) -> dict[str, str]:
    """One row of private/provenance.csv: which evaluation image a study image shows, and how."""
    return {
        "image_key": image_key,
        "image_id": source["image_id"],
        "patient_id": source["patient_id"],
        "modality": source["modality"],
        "region_yxhw": " ".join(map(str, region)),
        "window_low": repr(window[0]),
        "window_high": repr(window[1]),
    }


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(6)


def _spread_over_patients(
    image_ids: list[str], info: dict[str, dict[str, str]], count: int, seed: int
) -> list[str]:
    """``count`` image ids taken round-robin over patients in a seeded random order."""
    rng = np.random.default_rng(seed)
    by_patient: dict[str, list[str]] = defaultdict(list)
    for image_id in image_ids:
        by_patient[info[image_id]["patient_id"]].append(image_id)
    queues = [list(rng.permutation(by_patient[p])) for p in rng.permutation(sorted(by_patient))]
    chosen: list[str] = []
    while len(chosen) < count:
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(str(queue.pop(0)))
    return chosen


def _hidden_copy(image: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """The original as a hidden check: the lowest bit of ``fraction`` of its pixels flipped at
    random (a change of 1 in 255: invisible), so its bytes are not those of the shown original."""
    generator = np.random.default_rng(secrets.randbits(64))
    flipped = generator.random(image.shape) < fraction
    return image ^ flipped.astype(image.dtype)


def _restrict(path: Path) -> None:
    """Make ``path`` (patient ids) readable by its owner only, and its folder 0700."""
    path.parent.chmod(0o700)
    path.chmod(0o600)


def _blatantly_degraded(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An 8-bit rendering made obviously worse: 8x block averaging shown blocky, plus strong noise."""
    height, width = reference.shape
    small = cv2.resize(reference, (max(1, width // 8), max(1, height // 8)), interpolation=cv2.INTER_AREA)
    blocky = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST).astype(np.float64)
    noisy = blocky + rng.normal(0.0, 20.0, blocky.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


class _Renderer:
    """Windowing and cropping shared by an original and its reconstructions; random-named,
    uncompressed PNGs, written all at once in a random order (``flush``)."""

    def __init__(self, folder: Path, options: StudyOptions) -> None:
        self.folder = folder
        self.options = options
        self.pending: list[tuple[str, bytes]] = []
        self.images: dict[str, np.ndarray] = {}

    def prepare(
        self, reference_path: Path
    ) -> tuple[np.ndarray, tuple[int, int, int, int], tuple[float, float]]:
        """Region (a square centred on the body of the original), window (percentiles of that region), rendering."""
        image = read_png16(reference_path)
        region = _body_centred_region(image, self.options.crop)
        y, x, h, w = region
        low, high = np.percentile(image[y : y + h, x : x + w], self.options.window_percentiles)
        window = (float(low), float(high) if high > low else float(low) + 1e-6)
        return self._to_8bit(image, region, window), region, window

    def render(self, path: Path, region: tuple[int, int, int, int], window: tuple[float, float]) -> str:
        return self.write(self._to_8bit(read_png16(path), region, window))

    def write(self, image: np.ndarray) -> str:
        """Queue ``image`` (8-bit (H, W)) as an uncompressed PNG under a random name; returns the name."""
        name = secrets.token_hex(8) + ".png"
        # zlib level 0 (stored blocks): the size is a function of H and W only; no text or time chunks
        ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 0])
        if not ok:
            raise MedsrError(f"PNG encoding failed for {name}")
        self.pending.append((name, encoded.tobytes()))
        self.images[name] = image
        return name

    def image(self, name: str) -> np.ndarray:
        """A queued image (8-bit (H, W)) by name."""
        return self.images[name]

    def flush(self) -> None:
        """Write every queued image, in a random order, all with one modification time."""
        order = list(self.pending)
        secrets.SystemRandom().shuffle(order)
        stamp = _dt.datetime.now(_dt.timezone.utc).replace(minute=0, second=0, microsecond=0).timestamp()
        for name, data in order:
            (self.folder / name).write_bytes(data)
        for name, _ in order:
            os.utime(self.folder / name, (stamp, stamp))
        self.pending.clear()

    @staticmethod
    def _to_8bit(
        image: np.ndarray, region: tuple[int, int, int, int], window: tuple[float, float]
    ) -> np.ndarray:
        y, x, h, w = region
        low, high = window
        crop = (image[y : y + h, x : x + w].astype(np.float64) - low) / (high - low)
        return np.clip(np.rint(crop * 255.0), 0, 255).astype(np.uint8)


def _body_centred_region(image: np.ndarray, crop: int) -> tuple[int, int, int, int]:
    """(y, x, h, w) of the ``crop`` x ``crop`` square centred on the body (whole image if smaller)."""
    height, width = image.shape
    h, w = min(crop, height), min(crop, width)
    mask = body_mask(image)
    if mask.any():
        ys, xs = np.nonzero(mask)
        cy, cx = float(ys.mean()), float(xs.mean())
    else:
        cy, cx = height / 2, width / 2
    y = int(np.clip(round(cy - h / 2), 0, height - h))
    x = int(np.clip(round(cx - w / 2), 0, width - w))
    return y, x, h, w
