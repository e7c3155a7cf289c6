"""Metrics: a logger that is one ``write(step, metrics)`` over composable sinks.

A run directory's logger writes ``metrics.jsonl``, TensorBoard events and a progress bar; the
bench's writes into memory and nowhere else.  Every sink gets the same records.
"""
from __future__ import annotations

import json
import secrets
import struct
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


METRIC_DESCRIPTIONS = {
    "time/sps": "agent steps per second of wall-clock time over the log window (its evaluation and checkpoint included)",
    "train/episode_return": "mean return (raw game score) of the training episodes that ended in the log window",
    "train/episode_length": "mean length in agent steps of the training episodes that ended in the log window",
    "train/episodes": "training episodes that ended in the log window (a count per window, not cumulative)",
    "train/updates": "gradient updates since the run started (cumulative)",
    "train/epsilon": "exploration rate at the window's last agent step",
    "train/loss": "mean training loss over the window's updates",
    "train/q_mean": "mean Q-value of the batches' actions over the window's updates",
    "eval/episode_return": "mean return (raw game score) of the evaluation phase's whole episodes",
    "eval/episode_return_std": "standard deviation of those returns",
    "eval/episode_length": "mean length in agent steps of the evaluation episodes",
    "eval/episodes": "whole episodes in the evaluation phase",
    "spectral/sigma/<layer>": "top singular value of the layer's raw weight (power-iteration estimate)",
    "optim/rho/<layer>": "mean over the window's updates of the divisor the rho-scaling mode applied to the layer "
                         "(the gradient's under grad, lr+grad and divout, the learning rate's under lr; 1 where "
                         "the clamp max(rho, 1) holds it)",
    "optim/grad_norm/<layer>": "mean over the window's updates of the L2 norm of the layer's weight gradient as the "
                               "optimiser received it (after rho scaling, before global-norm clipping)",
    "optim/lr/<layer>": "mean over the window's updates of the learning rate the layer's weight was stepped with "
                        "(the base rate divided by rho under lr and lr+grad)",
    "diagnostics/srank": "effective rank of the penultimate features on evaluation states",
    "diagnostics/lipschitz_mean": "mean input-gradient norm of the greedy Q-value on evaluation states",
    "diagnostics/lipschitz_max": "largest input-gradient norm of the greedy Q-value on evaluation states",
    "eval/human_normalized": "the evaluation return human-normalised (Atari): (score - random) / (human - random)",
    "train/policy_loss": "mean PPO / A2C policy loss over the window's updates",
    "train/value_loss": "mean value loss over the window's updates",
    "train/entropy": "mean policy entropy (nats) over the window's updates",
    "train/approx_kl": "mean approximate KL divergence between the old and new policy over the window's PPO epochs",
    "train/clipfrac": "fraction of samples whose probability ratio PPO clipped, over the window's updates",
    "train/lr": "the learning rate at the window's last update (annealed schedules)",
}
"""What each logged scalar is, with its unit; the step axis is always agent steps."""


class TensorBoardSink:
    def __init__(self, run_dir: Path, start_step: int, config: dict | None = None):
        from torch.utils.tensorboard import SummaryWriter
        # purge_step hides events a killed run wrote after its last checkpoint
        self._writer = SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step else None)
        if not start_step:   # the run's config and what each scalar means, in the TEXT tab
            if config is not None:
                import yaml
                text = yaml.safe_dump(config, sort_keys=False)
                self._writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)
            rows = "\n".join(f"| `{k}` | {v} |" for k, v in METRIC_DESCRIPTIONS.items())
            self._writer.add_text("metrics", "step = agent steps\n\n| scalar | meaning (unit) |\n|---|---|\n" + rows, 0)

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
WANDB_BLOCK = 32768


def wandb_logged_steps(run_dir: Path) -> set[int]:
    """The history steps W&B's local transaction logs (``<run dir>/wandb/*/run-*.wandb``) hold: what it
    wrote before the process ended.  The file is a LevelDB-style log (32 KiB blocks of chunks with a
    7-byte header, after a 7-byte file header) of protobuf records; a torn tail is ignored."""
    from wandb.proto import wandb_internal_pb2 as pb
    steps: set[int] = set()
    for path in sorted({p.resolve() for p in Path(run_dir).glob("wandb/*/run-*.wandb")}):   # latest-run links
        data = path.read_bytes()
        pos, pending = 7, b""
        while pos + 7 <= len(data):
            if WANDB_BLOCK - pos % WANDB_BLOCK < 7:   # a block's tail too short for a chunk header is padding
                pos += WANDB_BLOCK - pos % WANDB_BLOCK
                continue
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            pending += data[pos + 7:pos + 7 + length]
            pos += 7 + length
            if kind not in (1, 4):   # a record continues in the next chunk
                continue
            record = pb.Record()
            try:
                record.ParseFromString(pending)
            except Exception:   # a torn write at the end of a killed run's file
                break
            pending = b""
            if record.WhichOneof("record_type") == "history":
                steps.add(int(record.history.step.num))
    return steps


class WandbSink:
    """A W&B run per run directory.  Its id is kept in the run directory (``wandb_run_id``), so a
    resumed run continues the same W&B run; offline files go to ``<run dir>/wandb``."""

    def __init__(self, run_dir: Path, settings, config: dict, start_step: int = 0):
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
        if start_step:
            self._backfill(Path(run_dir), start_step)

    def _backfill(self, run_dir: Path, start_step: int) -> None:
        """A resumed run: send W&B the rows of metrics.jsonl (up to the checkpoint) that its local logs
        lack, those a killed process still held in W&B's buffers, in step order."""
        logged = wandb_logged_steps(run_dir)
        rows: dict[int, dict] = {}
        for line in (run_dir / METRICS_FILE).read_text().splitlines() if (run_dir / METRICS_FILE).is_file() else []:
            record = json.loads(line)
            step = record.pop("step")
            if step <= start_step and step not in logged and step > max(logged, default=-1):
                rows.setdefault(step, {}).update(record)
        for step in sorted(rows):
            self._run.log(rows[step], step=step)

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
    sinks: list[Sink] = [JsonlSink(Path(run_dir) / METRICS_FILE, start_step),
                         TensorBoardSink(run_dir, start_step, config)]
    if wandb is not None and wandb.enabled:
        try:
            sinks.append(WandbSink(run_dir, wandb, config or {}, start_step))
        except ConfigError as exc:
            for sink in sinks:
                sink.close()
            again = " (nothing was trained or changed)" if start_step == 0 else " (--resume goes on)"
            raise ConfigError(f"{exc}{again}") from None
    return sinks


def _eta(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Logger:
    """``write(step, metrics)`` to every sink, and progress on stderr: on a terminal (with
    ``progress``) a bar, started with the first step so that the run's opening lines come first; to
    a file or pipe (a sweep cell's log, a redirected run) one plain line per log window instead.
    Both give the rate of the latest log window (``time/sps``), so warm-up without updates does not
    inflate it, and the ETA from that rate."""

    def __init__(self, sinks: list[Sink], start_step: int, total_steps: int, progress: bool = True,
                 terminal: bool | None = None, label: str = "", plain: bool = True):
        self.sinks, self.label = sinks, label   # the label starts each plain line (a population's members share a log)
        self.total_steps, self._start = total_steps, start_step
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self._use_bar = progress and terminal
        self._plain = plain and not terminal   # a run without a directory (the bench) prints no lines
        self._bar: tqdm | None = None
        self._shown: dict[str, str] = {}

    def _ensure_bar(self) -> tqdm | None:
        if self._use_bar and self._bar is None:
            self._bar = tqdm(total=self.total_steps, initial=self._start, unit="step", dynamic_ncols=True,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        return self._bar

    def write(self, step: int, metrics: dict[str, float]) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        for sink in self.sinks:
            sink.write(step, metrics)
        if "time/sps" in metrics and metrics["time/sps"] > 0:
            self._shown["steps/s"] = f"{metrics['time/sps']:.0f}"
            self._shown["ETA"] = _eta((self.total_steps - step) / metrics["time/sps"])
        for key, short in (("train/episode_return", "train"), ("eval/episode_return", "eval")):
            if key in metrics:
                self._shown[short] = f"{metrics[key]:.2f}"
        bar = self._ensure_bar()
        if bar is not None and self._shown:
            bar.set_postfix(self._shown, refresh=False)
        if self._plain and "time/sps" in metrics:
            shown = ", ".join(f"{k} {v}" for k, v in self._shown.items())
            print(f"{self.label + ': ' if self.label else ''}step {step:,}/{self.total_steps:,} "
                  f"({100 * step / max(self.total_steps, 1):.0f}%): {shown}",
                  file=sys.stderr, flush=True)

    def progress(self, step: int) -> None:
        bar = self._ensure_bar()
        if bar is not None:
            bar.update(step - bar.n)

    def message(self, text: str) -> None:
        line = one_line(text)   # no escape sequence of a name reaches the terminal
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        for sink in self.sinks:
            sink.close()
