"""``RUN/report.md`` and a self-contained ``RUN/report.html`` (images inlined) for ``medsr run``."""

from __future__ import annotations

import base64
import html
import json
import os
import platform
import re
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from medsr import __version__, layout
from medsr.fsutil import atomic_write_text, read_csv
from medsr.metrics.registry import ALWAYS, columns
from medsr.report import tables


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _environment(stage_seconds: dict[str, float]) -> list[list[str]]:
    import cv2
    import numpy
    import pydicom
    import torch

    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU, {os.cpu_count()} cores ({platform.machine()})"
    )
    rows = [
        ["medsr", __version__],
        ["Python", sys.version.split()[0]],
        ["PyTorch", torch.__version__],
        ["NumPy", numpy.__version__],
        ["pydicom", pydicom.__version__],
        ["OpenCV", cv2.__version__],
        ["device", device],
        ["platform", platform.platform()],
    ]
    rows += [[f"wall time: {stage}", f"{seconds:.1f} s"] for stage, seconds in stage_seconds.items()]
    return rows


def _headline(summary: dict, baseline: str) -> str:
    """One sentence per learned method and block (overall, then each modality): paired gains with
    CIs. "Above" needs both the t-interval of PSNR and SSIM above 0 and p < 0.05 over patients."""
    order = [m["name"] for m in summary["protocol"]["methods"]]
    lines = []
    for title, block in tables.blocks(summary):
        for name in sorted(block.get("vs_baseline", {}), key=order.index):
            if name in ("nearest", "bilinear", "lanczos"):
                continue
            psnr, ssim = block["vs_baseline"][name]["psnr"], block["vs_baseline"][name]["ssim"]
            above = all(d["ci_low"] > 0 and d["p_patients"] < 0.05 for d in (psnr, ssim))
            lines.append(
                f"**{name}** vs {baseline} ({title}; {tables.units(block)}): "
                f"PSNR {psnr['mean_diff']:+.2f} dB [95% CI {tables.interval(psnr, 2)}] "
                f"({psnr['improvement_pct']:+.2f}%, p {tables.p_value(psnr['p_patients'])} over patients), "
                f"SSIM {ssim['mean_diff']:+.4f} [{tables.interval(ssim, 4)}] "
                f"({ssim['improvement_pct']:+.2f}%): {'above' if above else 'not clearly above'} {baseline} on the held-out patients."
            )
    return "\n\n".join(lines)


class _Doc:
    """Blocks rendered twice: Markdown (images linked) and HTML (images inlined)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.md, self.html = run_dir, [], []

    def heading(self, text: str, level: int = 2) -> None:
        self.md.append(f"{'#' * level} {text}\n")
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.md.append(text + "\n")
        escaped = html.escape(text)
        while "**" in escaped:
            escaped = escaped.replace("**", "<b>", 1).replace("**", "</b>", 1)
        escaped = escaped.replace("`", "")
        self.html.append(f"<p>{escaped}</p>")

    def table(self, markdown: str) -> None:
        self.md.append(markdown + "\n")
        rows = [
            [cell.replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            for line in markdown.strip().splitlines()
        ]
        head, body = rows[0], rows[2:]
        cells = "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
        lines = [f"<table><thead><tr>{cells}</tr></thead><tbody>"]
        for row in body:
            lines.append("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row) + "</tr>")
        self.html.append("".join(lines) + "</tbody></table>")

    def rows(self, header: list[str], rows: list[list[str]]) -> None:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
        self.table("\n".join(lines))

    def image(self, path: Path, caption: str) -> None:
        if not path.is_file():
            return
        relative = path.relative_to(self.run_dir)
        self.md.append(f"![{caption}]({relative})\n")
        data = base64.b64encode(path.read_bytes()).decode()
        self.html.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        )

    def code(self, text: str) -> None:
        self.md.append("```\n" + text.rstrip() + "\n```\n")
        self.html.append(f"<pre>{html.escape(text)}</pre>")


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}
th{background:#eee}img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.85em}"""


def write_report(run_dir: Path, config, stage_seconds: dict[str, float]) -> list[Path]:
    """Write report.md and report.html from the run folder's outputs; returns both paths."""
    doc = _Doc(run_dir)
    test = _load(run_dir / layout.TEST_EVALUATION / layout.EVAL_SUMMARY)
    val = _load(run_dir / layout.BASELINE_EVALUATION / layout.EVAL_SUMMARY)
    doc.heading(f"medsr report: {config.name}", 1)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc.paragraph(f"{config.description} Generated {generated} by medsr {__version__}.".strip())
    if test:
        for note in tables.warnings(test):
            doc.paragraph(note)
        doc.paragraph(_headline(test, test["protocol"]["baseline"]))
    _evaluation_tables(doc, val, test)
    if test:
        _pretrained(doc, test)
    doc.heading("Training")
    for name in (layout.SRRESNET, layout.SRGAN):
        if name in stage_seconds:  # a stage this run has
            _training(doc, name, layout.run_training(run_dir, name))
    figures = sorted((run_dir / layout.TEST_EVALUATION / layout.EVAL_FIGURES).glob("*.png"))
    if figures:
        doc.heading("Sample images (test split; Figures 4-5)")
        for path in figures:
            doc.image(path, path.stem.replace("_", " "))
    _provenance(doc, run_dir, config)
    doc.heading("Resolved configuration")
    doc.code(json.dumps(asdict(config), indent=2))
    doc.heading("Environment")
    doc.rows(["item", "value"], _environment(stage_seconds))
    md_path, html_path = run_dir / layout.REPORT_MD, run_dir / layout.REPORT_HTML
    atomic_write_text(md_path, "\n".join(doc.md))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>medsr report: {html.escape(config.name)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(doc.html)}</body></html>"
    )
    atomic_write_text(html_path, page)
    return [md_path, html_path]


def _evaluation_tables(doc: _Doc, val: dict | None, test: dict | None) -> None:
    """Table 1 (baselines, validation split) and Table 2 (every method, test split), per block."""
    if val:
        doc.heading("Table 1: interpolation baselines (validation split)")
        doc.paragraph(tables.protocol_text(val["protocol"]))
        for title, block in tables.blocks(val):
            doc.table(
                tables.table1(block, [m["name"] for m in val["protocol"]["methods"]]).replace(
                    "| Method (", f"| Method, {title} (", 1
                )
            )
    if test:
        doc.heading("Table 2: methods against the baseline (test split, held-out patients)")
        doc.paragraph(tables.protocol_text(test["protocol"]))
        for title, block in tables.blocks(test):
            doc.heading(f"Table 2, {title}", 3)
            names, baseline = [m["name"] for m in test["protocol"]["methods"]], test["protocol"]["baseline"]
            doc.table(tables.table2(block, names, baseline))
            more = tables.more_metrics_table(
                block, names, baseline, columns(test["protocol"].get("metrics", ALWAYS))
            )
            if more:
                doc.paragraph(
                    f"More metrics, {title}: mean [95% CI]; difference to {baseline} [95% CI], p over patients."
                )
                doc.table(more)


def _pretrained(doc: _Doc, test: dict) -> None:
    """One paragraph per pretrained model of Table 2 (inference only: not trained in this run), with
    what the held-out check found of the test patients in its training record."""
    protocol = test["protocol"]
    overlaps = {o["model"]: o for o in protocol.get("overlap", [])}
    for method in protocol["methods"]:
        if not method.get("version"):  # built-in models carry their weights' version
            continue
        name = method["name"]
        check = (
            "it was scored with --allow-overlap: see the note above"
            if name in overlaps
            else f"none of the {test['n_patients']} test patients or their source files are in it"
        )
        doc.paragraph(
            f"**{name}** (pretrained, inference only: {method['source']}, architecture {method['architecture']}) "
            f"was trained before this run, not by it. Its weights carry a record of the patients they were "
            f"trained and validated on; the held-out check found that {check}."
        )


def _training(doc: _Doc, name: str, folder: Path) -> None:
    """One training run: epochs, best epoch, loss shares, curves and its config."""
    if not (folder / layout.TRAIN_LOG).is_file():
        return
    rows = read_csv(folder / layout.TRAIN_LOG)
    best = [r for r in rows if r.get("best") == "1"]
    config_path = folder / layout.TRAIN_CONFIG
    trained = config_path.read_text() if config_path.is_file() else ""
    shares = (
        ", ".join(
            f"{key[:-6]} {100 * float(value):.2f}%"
            for key, value in rows[-1].items()
            if key.endswith("_share") and value not in ("", "nan")
        )
        if rows
        else ""
    )
    doc.paragraph(
        (
            f"**{name}**: {len(rows)} epochs, best epoch {best[-1]['epoch'] if best else '-'} "
            f"(validation PSNR {float(best[-1]['val_psnr']):.2f} dB, SSIM {float(best[-1]['val_ssim']):.4f})."
            if best
            else f"**{name}**"
        )
        + (f" Share of each term in the generator loss in the last epoch: {shares}." if shares else "")
    )
    doc.image(folder / layout.CURVES_SSIM, f"{name}: SSIM per epoch, training and validation (Figure 6)")
    doc.image(folder / layout.CURVES_PSNR, f"{name}: PSNR per epoch, training and validation (Figure 7)")
    if trained:
        doc.code(trained)


def _provenance(doc: _Doc, run_dir: Path, config) -> None:
    """The data set's options, counts and patients per split, and where the images came from."""
    doc.heading("Data provenance")
    prepared = _load(layout.run_dataset(run_dir) / layout.PREPARE_INFO)
    if prepared:
        doc.paragraph(
            f"Pre-processing options: `{json.dumps(prepared['options'], sort_keys=True)}`; counts: `{json.dumps(prepared['counts'], sort_keys=True)}`."
        )
        doc.rows(
            ["split", "slices", "patients", "modalities"],
            [
                [
                    name,
                    str(s["slices"]),
                    str(len(s["patients"])),
                    ", ".join(f"{m} {n}" for m, n in s["modalities"].items()),
                ]
                for name, s in prepared["splits"].items()
            ],
        )
        doc.rows(
            ["split", "patients"],
            [
                [name, ", ".join(p.split(":", 1)[-1] for p in s["patients"])]
                for name, s in prepared["splits"].items()
            ],
        )
    sources = Path(str(config.data.path or "")) if config.data.source == "folder" else None
    record = _load(layout.stage_record(run_dir, "data")) or {}
    folder = Path(record.get("info", {}).get("folder", "")) if record else None
    if folder and (folder / layout.SAMPLE_SOURCES).is_file():
        doc.rows(
            ["file", "modality", "patient", "package", "licence", "description"],
            [
                [
                    r["file"],
                    r["modality"],
                    r["patient_id"] or "(in DICOM)",
                    f"{r['package']}=={r['version']}",
                    r["licence"],
                    r["description"],
                ]
                for r in read_csv(folder / layout.SAMPLE_SOURCES)
            ],
        )
    elif sources:
        doc.paragraph(f"Images from the local folder `{sources}`.")
    elif config.data.source == "tcia":
        doc.paragraph(
            f"TCIA collection {config.data.collection} (modality {config.data.modality or 'all'}), downloaded through the NBIA API."
        )
