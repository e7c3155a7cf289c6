"""Agent-step schedules shared by the training loops."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from rlsmooth.config import LoopConfig
from rlsmooth.logger import Logger
from rlsmooth.rundir import StopFlag


def due(marks: dict, key: str, step: int, interval: int, final: bool = False) -> bool:
    """True once ``step`` reaches ``marks[key]`` (always on the final step); moves the mark past ``step``.

    ``interval`` 0 means 'only on the final step'.
    """
    if step < marks[key] and not final:
        return False
    while marks[key] <= step:
        marks[key] += interval or max(step, 1)
    return True


def end_of_iteration(counters: dict, step: int, final: bool, loop: LoopConfig, logger: Logger,
                     run_eval: Callable[[], dict], save_checkpoint: Callable[[], None], stop: StopFlag,
                     run_dir: Path) -> dict | None:
    """Evaluate and checkpoint when due, then honour a Ctrl-C; returns the evaluation metrics if one ran.

    The checkpoint comes last, so everything logged at ``step`` is covered by it.
    """
    result = None
    if due(counters, "next_eval", step, loop.eval_every, final):
        result = run_eval()
        logger.write(step, result)
    if due(counters, "next_checkpoint", step, loop.checkpoint_every, final):
        save_checkpoint()
    if stop.requested:
        save_checkpoint()
        logger.message(f"interrupted at step {step}: checkpoint written; "
                       f"continue with: python run.py train --resume {run_dir}")
        logger.close()
        raise KeyboardInterrupt
    return result
