"""The names of the files and folders medsr writes and reads, in one place (standard library only).

Every module builds its paths from these constants and functions instead of spelling the names,
so that a writer and its readers (``prepare`` and ``train``, ``evaluate`` and ``mos create``,
every stage of ``medsr run`` and its report) cannot drift apart.

A run folder of ``medsr run`` (``RUN``)::

    RUN/run_config.yaml          RUN_CONFIG
    RUN/stages/<stage>.json      stage_record(run_dir, stage)
    RUN/tcia/                    TCIA_DOWNLOAD (data.source: tcia)
    RUN/dataset/                 run_dataset(run_dir): a data set, below
    RUN/table1-val/              BASELINE_EVALUATION: an evaluation, below
    RUN/srresnet/, RUN/srgan/    run_training(run_dir, name): a training run, below
    RUN/eval-test/               TEST_EVALUATION: an evaluation, below
    RUN/report.md, report.html   REPORT_MD, REPORT_HTML
"""

from __future__ import annotations

from pathlib import Path

# ------------------------------------------------------------------ a data set (medsr prepare)
#: One row per slice; written last, so a data set with a manifest is complete.
MANIFEST = "manifest.csv"
#: Inputs that were unreadable or had no usable slice.
SKIPPED = "skipped.csv"
#: Options, counts and splits of the ``prepare`` that made the data set.
PREPARE_INFO = "prepare.json"
#: Folder of the slices (lossless 16-bit PNG).
SLICES = "slices"
#: Hidden folder where ``prepare`` stages slices before they move into ``SLICES``.
STAGING = ".staging"

# ------------------------------------------------------------------ an evaluation (medsr evaluate)
#: Protocol, means with intervals and paired differences.
EVAL_SUMMARY = "summary.json"
#: The paper's Table 1 / Table 2 layouts.
EVAL_TABLE = "table.md"
#: One row per image and method.
EVAL_METRICS = "metrics.csv"
#: Comparison figures.
EVAL_FIGURES = "figures"
#: Saved reconstructions (``--save-outputs``), one folder per method.
EVAL_OUTPUTS = "outputs"
#: The list of saved reconstructions, relative to the evaluation folder.
EVAL_OUTPUTS_INDEX = f"{EVAL_OUTPUTS}/index.csv"

# ------------------------------------------------------------------ a training run (medsr train)
#: Checkpoint of the best validation epoch.
BEST_CHECKPOINT = "best.pt"
#: Checkpoint of the last finished epoch (what ``--resume`` continues).
LAST_CHECKPOINT = "last.pt"
#: One row per epoch.
TRAIN_LOG = "log.csv"
#: The resolved experiment config.
TRAIN_CONFIG = "config.yaml"
#: SSIM and PSNR per epoch (the paper's Figures 6 and 7).
CURVES_SSIM = "curves_ssim.png"
CURVES_PSNR = "curves_psnr.png"
#: TensorBoard event files.
TENSORBOARD = "tensorboard"

# ------------------------------------------------------------------ sample data (medsr sample-data)
#: Source package, licence and checksum of each sample image.
SAMPLE_SOURCES = "sources.csv"

# ------------------------------------------------------------------ a reader study (medsr mos)
#: The study description.
STUDY_FILE = "study.json"
#: The ratings database (SQLite).
MOS_DATABASE = "mos.sqlite"
#: Default output folder of ``medsr mos report``, inside the study folder.
MOS_REPORT_DIR = "report"
#: Files of ``medsr mos report``.
MOS_REPORT_MD = "report.md"
MOS_REPORT_JSON = "report.json"
MOS_SCORES = "mos.csv"
MOS_RATINGS = "ratings.csv"

# ------------------------------------------------------------------ a run folder (medsr run)
#: The run config as resolved (every default written out).
RUN_CONFIG = "run_config.yaml"
#: One record per finished stage: ``stages/<stage>.json``.
STAGES_DIR = "stages"
#: The data set the run prepares.
DATASET = "dataset"
#: Download folder of ``data.source: tcia``.
TCIA_DOWNLOAD = "tcia"
#: The interpolation baselines on the validation split (the paper's Table 1).
BASELINE_EVALUATION = "table1-val"
#: Every method on the held-out test split (the paper's Table 2; what ``medsr mos create`` reads).
TEST_EVALUATION = "eval-test"
#: The training runs, named after their stages.
SRRESNET = "srresnet"
SRGAN = "srgan"
#: The run's report.
REPORT_MD = "report.md"
REPORT_HTML = "report.html"


def stage_record(run_dir: str | Path, stage: str) -> Path:
    """``RUN/stages/<stage>.json``: the record of a finished stage."""
    return Path(run_dir) / STAGES_DIR / f"{stage}.json"


def run_dataset(run_dir: str | Path) -> Path:
    """``RUN/dataset``: the data set a run prepares and trains on."""
    return Path(run_dir) / DATASET


def run_training(run_dir: str | Path, name: str) -> Path:
    """``RUN/<name>``: the training run of stage ``name`` (``SRRESNET`` or ``SRGAN``)."""
    return Path(run_dir) / name


def slice_file(slice_id: str) -> str:
    """A slice's file, relative to its data set (as the manifest's ``file`` column holds it)."""
    return f"{SLICES}/{slice_id}.png"
