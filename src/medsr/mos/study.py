"""A reader study on disk: ``medsr mos create`` builds it, the server and the report read it.

A study folder holds only what raters may see, plus the organiser's key:

* ``study.json``: trials and items with opaque ids, which item is which method (never sent to a
  rater), the calibration trial, the rating scale and how the images were rendered;
* ``images/<random>.png``: de-identified 8-bit renderings (no DICOM, no text chunks, random names),
  the same region and the same window for the original and every reconstruction of one image;
* ``private/provenance.csv``: which evaluation image each study image came from (patient included).
  It stays in the study folder (``private/`` is 0700, the file 0600): the server serves nothing but
  ``images/``, and reports name images by their study key (``image-01``), never by patient.

How a study is built (and why its bytes keep the blinding): :mod:`medsr.mos.build`. Blinding holds in the bytes, not only in the names: every image is an *uncompressed* PNG, so its
size depends only on its width and height (the same for every image of a trial), never on its
content; the hidden original is the original with the lowest bit of a few random pixels flipped
(it looks the same, but its bytes differ); the files are written in a random order and all get the
same modification time, so neither size, hash, order nor time tells a method or a check apart.

Each trial shows one original and one reconstruction per method, plus (unless ``check_fraction`` is
0) exactly one hidden item, so that every trial has as many images: on some trials an attention
check, the original itself (a rater should give it 4 or 5) or a blatantly degraded rendering (1 or
2); on the others a second showing of one method's reconstruction (its two scores measure how
consistently a rater scores; it does not enter the MOS).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from medsr import layout
from medsr.errors import MedsrError

STUDY_FILE = layout.STUDY_FILE
IMAGES = "images"
PROVENANCE = Path("private") / "provenance.csv"
FORMAT = "medsr-mos-study"
IMAGE_NAME = re.compile(r"^[0-9a-f]{16}\.png$")
SCALE_LABELS = {
    1: "poor reconstruction: clearly different from the original",
    2: "fair: obvious loss of detail or artefacts",
    3: "good: differences visible at normal viewing",
    4: "very good: small differences, seen only on close inspection",
    5: "indistinguishable from the original",
}
# An attention check fails when the original scores at most this, or the degraded image at least that.
CHECK_ORIGINAL = "check_original"
CHECK_DEGRADED = "check_degraded"
REPEAT = "repeat"  # a method's reconstruction shown a second time (its method in ``Item.method``)
METHOD = "method"
NARROW_SCREEN_PX = 1024  # raters on narrower windows are warned; their ratings are counted in the report
# A rater who gives every image the middle of the scale must fail both kinds of check.
ORIGINAL_CHECK_FAIL_AT_MOST = 3
DEGRADED_CHECK_FAIL_AT_LEAST = 3


@dataclass(frozen=True)
class Item:
    """One image a rater scores: a method's reconstruction or a hidden attention check."""

    item_id: str
    file: str
    kind: str  # METHOD, CHECK_ORIGINAL, CHECK_DEGRADED or REPEAT
    method: str | None = None


@dataclass(frozen=True)
class Trial:
    trial_id: str
    image_key: str
    original: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class CalibrationItem:
    item_id: str
    file: str
    expected: int
    explanation: str


@dataclass
class Study:
    """A loaded study folder; every id lookup the server and the report need."""

    folder: Path
    study_id: str
    title: str
    methods: tuple[str, ...]
    baseline: str
    trials: tuple[Trial, ...]
    calibration_original: str
    calibration: tuple[CalibrationItem, ...]
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.trial_by_id = {t.trial_id: t for t in self.trials}
        self.item_by_id = {i.item_id: i for t in self.trials for i in t.items}
        self.trial_of_item = {i.item_id: t for t in self.trials for i in t.items}
        self.image_files = {t.original for t in self.trials} | {i.file for t in self.trials for i in t.items}
        self.image_files |= {self.calibration_original} | {c.file for c in self.calibration}

    @property
    def images_dir(self) -> Path:
        return self.folder / IMAGES

    @property
    def n_ratings_per_rater(self) -> int:
        return len(self.item_by_id)


def load_study(folder: str | Path) -> Study:
    """Read and check ``folder/study.json`` (every image present, ids unique).

    Raises:
        MedsrError: not a study folder, or a study that does not hold together (the message says why).
    """
    folder = Path(folder)
    path = folder / STUDY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MedsrError(
            f"{folder}: not a reader study (no {STUDY_FILE}; build one with medsr mos create)"
        ) from None
    except (OSError, ValueError) as exc:
        raise MedsrError(f"{path}: unreadable ({exc})") from None
    if data.get("format") != FORMAT:
        raise MedsrError(f"{path}: not a medsr reader study (format {data.get('format')!r})")
    try:
        trials = tuple(
            Trial(t["trial_id"], t["image_key"], t["original"], tuple(Item(**item) for item in t["items"]))
            for t in data["trials"]
        )
        calibration = tuple(CalibrationItem(**c) for c in data["calibration"]["items"])
        study = Study(
            folder,
            data["study_id"],
            data["title"],
            tuple(data["methods"]),
            data["baseline"],
            trials,
            data["calibration"]["original"],
            calibration,
            data,
        )
    except (KeyError, TypeError) as exc:
        raise MedsrError(f"{path}: malformed study ({exc})") from None
    item_ids = [i.item_id for t in trials for i in t.items] + [c.item_id for c in calibration]
    if len(set(item_ids)) != len(item_ids) or len({t.trial_id for t in trials}) != len(trials):
        raise MedsrError(f"{path}: duplicate trial or item ids")
    for name in study.image_files:
        if not IMAGE_NAME.match(name) or not (study.images_dir / name).is_file():
            raise MedsrError(f"{path}: image {name} is missing from {IMAGES}/")
    return study
