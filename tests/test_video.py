"""eval --video: MP4 files of the right length and frame size, Atari in colour in lock-step with the
policy's own env, MinAtar's grid drawn cell by cell, and bad video directories refused."""
import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_cli

imageio = pytest.importorskip("imageio.v3")
pytest.importorskip("imageio_ffmpeg")

from rlsmooth.agents import algo_classes  # noqa: E402
from rlsmooth.config.sections import parse_train_config  # noqa: E402
from rlsmooth.config.yaml_files import load_yaml  # noqa: E402
from rlsmooth.experiments import video  # noqa: E402
from rlsmooth.pieces.envs import AtariVecEnv  # noqa: E402
from rlsmooth.pieces.seeding import EVAL_CLI, SeedStreams  # noqa: E402


def atari_cfg(**env):
    data = load_yaml(ROOT / "configs" / "atari_dqn_adam.yaml")
    data["env"].update(game="pong", **env)
    return parse_train_config(data, algo_classes())


def test_atari_video_has_one_colour_frame_per_step(tmp_path):
    run = tmp_path / "run"
    run_cli("train", ROOT / "configs" / "atari_dqn_adam.yaml", "env.game=pong", "env.num_envs=1",
            "env.max_episode_frames=400", "algo.replay_capacity=2000", "algo.learning_starts=64",
            "loop.total_steps=160", "loop.eval_every=0", "loop.eval_steps=32", "loop.progress=false",
            "--out", run, check=True)
    out = run_cli("eval", run, "--episodes", "2", "--video", tmp_path / "vid", check=True).stdout
    assert "over 2 episodes" in out and "160x210" in out
    for i in range(2):
        frames = imageio.imread(tmp_path / "vid" / f"episode_{i}.mp4")
        # 400 frames at frame skip 4: 100 agent steps (no Pong point ends sooner), + the reset frame
        assert frames.shape == (101, 210, 160, 3)
        assert frames.std() > 10   # a game, not a blank screen


def test_colour_twin_plays_the_policy_envs_episode():
    cfg = atari_cfg()
    seeds = SeedStreams(3).env_seeds(EVAL_CLI, 2)
    env = AtariVecEnv(cfg.env, 1, [seeds[0]], training=False)
    same, other = (video.AtariColour(cfg, s, env.max_steps) for s in seeds)
    rng = np.random.default_rng(0)

    def grey84(frame):   # luminance, area-averaged to 84x84 (as ale-py's resize does)
        import torch
        grey = torch.from_numpy(frame @ np.array([0.299, 0.587, 0.114], np.float32))
        return torch.nn.functional.adaptive_avg_pool2d(grey[None, None], (84, 84))[0, 0].numpy()

    obs = env.reset()
    near, far = [], []
    frames = (same.reset(), other.reset())
    for _ in range(200):
        near.append((np.abs(grey84(frames[0]) - obs[0, -1]) > 40).mean())   # pixels that disagree
        far.append((np.abs(grey84(frames[1]) - obs[0, -1]) > 40).mean())
        action = rng.integers(env.num_actions, size=1)
        obs = env.step(action).obs
        frames = (same.step(action), other.step(action))
    # the policy's frame is max-pooled over the last two: the ball alone may disagree (measured 0.04%)
    assert np.mean(near) < 0.002
    assert np.mean(far) > 5 * np.mean(near)   # another seed's episode is another episode (measured 0.8%)
    for e in (env, same, other):
        e.close()


def test_grid_frame_colours_each_cell_by_its_top_channel():
    grid = np.zeros((4, 10, 10), np.uint8)
    grid[0, 1, 2] = 1
    grid[0, 3, 3] = grid[2, 3, 3] = 1   # channels 0 and 2 both set: drawn as channel 2
    image = video.grid_frame(grid)
    assert image.shape == (160, 160, 3)
    assert (image[16:32, 32:48] == video.PALETTE[0]).all()
    assert (image[48:64, 48:64] == video.PALETTE[2]).all()
    assert (image[:16, :16] == 0).all()
    assert (image.reshape(10, 16, 10, 16, 3).any(axis=(1, 3, 4)) == grid.any(0)).all()


def test_minatar_video_length_matches_the_episode(tmp_path):
    pytest.importorskip("minatar")
    data = load_yaml(ROOT / "configs" / "minatar_dqn.yaml")
    data["env"]["game"] = "breakout"
    cfg = parse_train_config(data, algo_classes())
    seeds = SeedStreams(0).env_seeds(EVAL_CLI, 2)
    episodes = video.record(cfg, lambda env: lambda obs: np.zeros(1, np.int64), seeds, tmp_path / "vid")
    for e in episodes:
        frames = imageio.imread(e.path)
        assert frames.shape == (e.steps + 1, 160, 160, 3)


def test_bad_video_directories_are_refused(tmp_path, chain_config):
    run = tmp_path / "run"
    run_cli("train", chain_config("dqn", steps=200), "--out", run, check=True)
    assert_one_line_error(run_cli("eval", run, "--video", tmp_path / "v"), "--video records Atari and MinAtar")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.mp4").write_text("mine")
    data = load_yaml(ROOT / "configs" / "minatar_dqn.yaml")
    cfg = parse_train_config(data, algo_classes())
    with pytest.raises(Exception, match="is not empty"):
        video.record(cfg, lambda env: None, SeedStreams(0).env_seeds(EVAL_CLI, 1), full)
    assert (full / "keep.mp4").read_text() == "mine"
