"""Metrics: one ``write(step, metrics)`` to JSONL, TensorBoard and a progress bar."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from rlsmooth.config import read_text
from rlsmooth.errors import ConfigError
from rlsmooth.files import atomic_write_text

METRICS_FILE = "metrics.jsonl"


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the lines with ``step <= last_step``; a last line cut by a kill is dropped.

    Any other line that is not a JSON object with an integer ``step`` means the file is not this
    run's metrics: ConfigError, and the file is left as it is.
    """
    if not path.exists():
        return
    lines = read_text(path, "metrics file").splitlines(keepends=True)
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            step = record["step"] if isinstance(record, dict) else None
        except json.JSONDecodeError:
            record, step = None, None
        if not isinstance(step, int) or isinstance(step, bool):
            if number == len(lines) and not line.endswith("\n"):
                break   # the line a kill cut short
            raise ConfigError(f"{path} line {number} is not a metrics record (a JSON object with an integer step)")
        if step <= last_step:
            kept.append(line)
    atomic_write_text(path, "".join(kept))


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in read_text(path, "metrics file").splitlines() if line.strip()]


class Logger:
    def __init__(self, run_dir: Path, start_step: int, total_steps: int, progress: bool = True,
                 tensorboard: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        truncate_metrics(self.path, start_step)
        self._file = self.path.open("a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            # purge_step hides events a killed run wrote after its last checkpoint
            self._tb = SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step else None)
        self._bar = tqdm(total=total_steps, initial=start_step, unit="step", disable=not progress,
                         dynamic_ncols=True, smoothing=0.05)
        self._shown: dict[str, float] = {}
        self._last = time.perf_counter()

    def write(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, value, step)
        for key, short in (("train/episode_return", "train"), ("eval/episode_return", "eval")):
            if key in metrics:
                self._shown[short] = round(float(metrics[key]), 2)
        if self._shown:
            self._bar.set_postfix(self._shown, refresh=False)

    def progress(self, step: int) -> None:
        self._bar.update(step - self._bar.n)

    def message(self, text: str) -> None:
        self._bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
        self._file.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
