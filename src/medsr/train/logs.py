"""Training logs: per-epoch CSV (rewritten atomically), TensorBoard scalars, and the paper's
Figures 6-7 (SSIM and PSNR per epoch, train against validation) as PNG."""

from __future__ import annotations

from pathlib import Path

from medsr.fsutil import atomic_path, atomic_write_csv


class RunLog:
    """Writes ``log.csv``, ``tensorboard/`` and ``curves_{ssim,psnr}.png`` in the run folder."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.run_dir = run_dir
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a dependency; tolerate its absence in minimal installs
                self.writer = None

    def write(self, history: list[dict]) -> None:
        """Rewrite the CSV and the curves from the whole history; add the last row to TensorBoard."""
        columns: list[str] = []
        for row in history:
            columns += [k for k in row if k not in columns]
        atomic_write_csv(self.run_dir / "log.csv", columns, history)
        if self.writer is not None and history:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    group = (
                        "val" if key.startswith("val_") else "train" if key.startswith("train_") else "loss"
                    )
                    self.writer.add_scalar(f"{group}/{key}", value, row["epoch"])
            self.writer.flush()
        self._curves(history)

    def _curves(self, history: list[dict]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [row["epoch"] for row in history]
        for metric, label in (("ssim", "SSIM"), ("psnr", "PSNR (dB)")):
            figure, axis = plt.subplots(figsize=(5, 3.4), layout="constrained")
            for split, style in (("train", "-"), ("val", "--")):
                values = [row.get(f"{split}_{metric}") for row in history]
                if any(v is not None for v in values):
                    axis.plot(
                        epochs,
                        values,
                        style,
                        marker="o",
                        markersize=3,
                        label=f"{'training' if split == 'train' else 'validation'}",
                    )
            best = [row["epoch"] for row in history if row.get("best")]
            if best:
                axis.axvline(
                    best[-1], color="gray", linewidth=0.8, linestyle=":", label=f"best epoch {best[-1]}"
                )
            axis.set_xlabel("epoch")
            axis.set_ylabel(label)
            axis.set_title(f"{label} per epoch")
            axis.legend(fontsize=8)
            try:
                with atomic_path(self.run_dir / f"curves_{metric}.png") as tmp:
                    figure.savefig(tmp, dpi=100, format="png")
            finally:
                plt.close(figure)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
