"""Metrics: a logger that is one ``write(step, metrics)`` over composable sinks.

A run directory's logger writes ``metrics.jsonl``, TensorBoard events and a progress bar; the
bench's writes into memory and nowhere else.  Every sink gets the same records.
"""
from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from rlsmooth.errors import ConfigError, one_line
from rlsmooth.files import atomic_write_text, read_text

METRICS_FILE = "metrics.jsonl"


class Sink(Protocol):
    def write(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


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


class JsonlSink:
    """``metrics.jsonl``: one JSON object per line; lines after ``start_step`` (a killed run's) are dropped."""

    def __init__(self, path: Path, start_step: int):
        self.path = Path(path)
        truncate_metrics(self.path, start_step)
        self._file = self.path.open("a")

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self._file.write(json.dumps({"step": int(step), **metrics}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardSink:
    def __init__(self, run_dir: Path, start_step: int):
        from torch.utils.tensorboard import SummaryWriter
        # purge_step hides events a killed run wrote after its last checkpoint
        self._writer = SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step else None)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


class MemorySink:
    """Records kept in a list (the bench reads its loop rates from here)."""

    def __init__(self):
        self.records: list[dict] = []

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self.records.append({"step": int(step), **metrics})

    def close(self) -> None:
        pass


WANDB_ID_FILE = "wandb_run_id"


class WandbSink:
    """A W&B run per run directory.  Its id is kept in the run directory (``wandb_run_id``), so a
    resumed run continues the same W&B run; offline files go to ``<run dir>/wandb``."""

    def __init__(self, run_dir: Path, settings, config: dict):
        import wandb
        id_file = Path(run_dir) / WANDB_ID_FILE
        run_id = read_text(id_file, "W&B run id").strip() if id_file.is_file() else secrets.token_hex(6)
        atomic_write_text(id_file, run_id + "\n")
        in_sweep = (Path(run_dir) / "sweep_cell.json").is_file()
        try:
            self._run = self._init(wandb, run_dir, settings, config, run_id, in_sweep)
        except Exception as exc:   # not logged in, no network, a bad entity: one line, not a traceback
            raise ConfigError(f"W&B did not start ({type(exc).__name__}: {exc}); wandb.mode=offline needs no "
                              f"account or network") from None

    @staticmethod
    def _init(wandb, run_dir: Path, settings, config: dict, run_id: str, in_sweep: bool):
        return wandb.init(project=settings.project, entity=settings.entity or None, id=run_id, resume="allow",
                          group=settings.group or (Path(run_dir).resolve().parent.name if in_sweep else None),
                          name=settings.name or Path(run_dir).name, config=config, mode=settings.mode,
                          dir=str(run_dir), reinit="create_new")

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(dict(metrics), step=int(step))

    def close(self) -> None:
        self._run.finish()


def run_dir_sinks(run_dir: Path, start_step: int, wandb=None, config: dict | None = None) -> list[Sink]:
    """metrics.jsonl and TensorBoard; W&B too when ``wandb.enabled`` (``wandb``: the config's section)."""
    sinks: list[Sink] = [JsonlSink(Path(run_dir) / METRICS_FILE, start_step), TensorBoardSink(run_dir, start_step)]
    if wandb is not None and wandb.enabled:
        try:
            sinks.append(WandbSink(run_dir, wandb, config or {}))
        except ConfigError as exc:
            for sink in sinks:
                sink.close()
            again = " (nothing was trained or changed)" if start_step == 0 else " (--resume goes on)"
            raise ConfigError(f"{exc}{again}") from None
    return sinks


class Logger:
    """``write(step, metrics)`` to every sink, and a progress bar with the latest returns."""

    def __init__(self, sinks: list[Sink], start_step: int, total_steps: int, progress: bool = True):
        self.sinks = sinks
        self._bar = tqdm(total=total_steps, initial=start_step, unit="step", disable=not progress,
                         dynamic_ncols=True, smoothing=0.05)
        self._shown: dict[str, float] = {}

    def write(self, step: int, metrics: dict[str, float]) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        for sink in self.sinks:
            sink.write(step, metrics)
        for key, short in (("train/episode_return", "train"), ("eval/episode_return", "eval")):
            if key in metrics:
                self._shown[short] = round(metrics[key], 2)
        if self._shown:
            self._bar.set_postfix(self._shown, refresh=False)

    def progress(self, step: int) -> None:
        self._bar.update(step - self._bar.n)

    def message(self, text: str) -> None:
        self._bar.write(one_line(text), file=sys.stderr)   # no escape sequence of a name reaches the terminal

    def close(self) -> None:
        self._bar.close()
        for sink in self.sinks:
            sink.close()
