"""The logger: one write to every sink, metrics.jsonl truncated to a resumed run's checkpoint."""
import json

import pytest

from rlsmooth.errors import ConfigError
from rlsmooth.training.logger import JsonlSink, Logger, MemorySink, truncate_metrics


def test_every_sink_gets_the_same_records(tmp_path):
    memory, jsonl = MemorySink(), JsonlSink(tmp_path / "m.jsonl", 0)
    logger = Logger([memory, jsonl], 0, 100, progress=False)
    logger.write(10, {"train/loss": 1, "eval/episode_return": 2.5})
    logger.write(20, {"train/loss": 0.5})
    logger.close()
    lines = [json.loads(l) for l in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert lines == memory.records == [{"step": 10, "train/loss": 1.0, "eval/episode_return": 2.5},
                                       {"step": 20, "train/loss": 0.5}]


def test_truncation_keeps_lines_up_to_the_step_and_drops_a_cut_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "x"')
    truncate_metrics(path, 2)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    path.write_text('{"step": 1}\n[1, 2]\n{"step": 3}\n')
    with pytest.raises(ConfigError, match="line 2 is not a metrics record"):
        truncate_metrics(path, 5)
    assert path.read_text() == '{"step": 1}\n[1, 2]\n{"step": 3}\n'   # left as it was


def test_progress_is_plain_lines_off_a_terminal_and_a_late_bar_on_one(capsys):
    from rlsmooth.training.logger import Logger
    plain = Logger([], 0, 1000, progress=True, terminal=False, label="run-a")
    plain.message("run directory: x")
    plain.progress(100)
    plain.write(100, {"time/sps": 50.0, "train/episode_return": 1.5})
    plain.close()
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err
    assert err.splitlines() == ["run directory: x", "run-a: step 100/1,000 (10%): steps/s 50, ETA 0m18s, train 1.50"]
    bar = Logger([], 0, 1000, progress=True, terminal=True)
    bar.message("run directory: y")          # before the bar exists: the opening line comes first
    assert bar._bar is None
    bar.progress(10)
    assert bar._bar is not None
    bar.close()
    assert capsys.readouterr().err.startswith("run directory: y")


def test_tensorboard_carries_the_config_and_a_description_of_every_scalar(chain_config, tmp_path):
    import json
    from conftest import run_cli
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from rlsmooth.training.logger import METRIC_DESCRIPTIONS
    out = tmp_path / "run"
    run_cli("train", chain_config(steps=400), "spectral.track=[fc]", "optim.rho_scaling=lr+grad", "optim.rho_layers=[fc]",
            "--out", out, check=True)
    events = EventAccumulator(str(out), size_guidance={"tensors": 0})
    events.Reload()
    texts = {tag: events.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]
             if tag.endswith("text_summary")}
    config = next(v for k, v in texts.items() if k.startswith("config"))
    assert "total_steps: 400" in config and "agent: dqn" in config
    logged = {k for line in (out / "metrics.jsonl").read_text().splitlines() for k in json.loads(line) if k != "step"}
    described = {k.replace("<layer>", "") for k in METRIC_DESCRIPTIONS}
    missing = [k for k in logged if k not in described and not any(k.startswith(d) for d in described if d.endswith("/"))]
    assert not missing, missing
