import numpy as np
import pytest
import torch

from rlsmooth.pieces.replay import FrameReplay


def frame(value, shape=(1, 2, 2)):
    return np.full(shape, value, np.uint8)


def fill(replay, n_steps, episode_end_at=(), terminal_at=(), num_envs=1):
    """Write frames valued 1, 2, ... ; step t's action is t, reward t.  Final obs frames are 100 + t."""
    replay.start(np.stack([frame(1)] * num_envs))
    value = 1
    for t in range(n_steps):
        value += 1
        end = np.array([t in episode_end_at] * num_envs)
        term = np.array([t in terminal_at] * num_envs)
        nxt = np.stack([frame(value)] * num_envs)
        fin = np.stack([frame(100 + t)] * num_envs)
        replay.add(np.full(num_envs, t), np.full(num_envs, float(t)), term, end, nxt, fin)


def all_transitions(replay, batch=4000):
    obs, action, reward, discount, next_obs = replay.sample_arrays(batch)
    out = {}
    for i in range(batch):
        out[int(action[i])] = (obs[i], float(reward[i]), float(discount[i]), next_obs[i])
    return out


def test_stacking_and_one_step_targets():
    r = FrameReplay(capacity=100, num_envs=1, frame_shape=(1, 2, 2), stack=3, gamma=0.5)
    fill(r, 10)
    tr = all_transitions(r)
    # transition t starts from frame t+1 and the stack holds frames t-1, t, t+1 (oldest first)
    obs, reward, discount, next_obs = tr[5]
    assert obs[:, 0, 0].tolist() == [4, 5, 6]
    assert next_obs[:, 0, 0].tolist() == [5, 6, 7]
    assert reward == 5.0 and discount == 0.5
    # at the episode start the stack is zero-filled, as ale-py does at reset
    obs, *_ = tr[0]
    assert obs[:, 0, 0].tolist() == [0, 0, 1]


def test_episode_boundary_stacking_and_truncation_bootstrap():
    r = FrameReplay(capacity=100, num_envs=1, frame_shape=(1, 2, 2), stack=3, gamma=0.5)
    fill(r, 8, episode_end_at={3})          # truncated after step 3: no terminal flag
    tr = all_transitions(r)
    obs, reward, discount, next_obs = tr[3]
    assert next_obs[:, 0, 0].tolist() == [3, 4, 103]   # bootstraps from the final observation
    assert discount == 0.5
    # step 4 starts the new episode: no frame of the old episode in its stack
    obs, *_ = tr[4]
    assert obs[:, 0, 0].tolist() == [0, 0, 5]
    obs, _, _, next_obs = tr[5]
    assert obs[:, 0, 0].tolist() == [0, 5, 6]
    assert next_obs[:, 0, 0].tolist() == [5, 6, 7]


def test_terminal_masks_bootstrap_and_life_loss_keeps_stack():
    r = FrameReplay(capacity=100, num_envs=1, frame_shape=(1, 2, 2), stack=2, gamma=0.9)
    fill(r, 8, terminal_at={2, 5}, episode_end_at={5})   # life lost at 2 (game continues), game over at 5
    tr = all_transitions(r)
    assert tr[2][2] == 0.0 and tr[5][2] == 0.0 and tr[1][2] == pytest.approx(0.9)
    # a lost life is terminal for bootstrapping but the frame stack continues
    assert tr[3][0][:, 0, 0].tolist() == [3, 4]


def test_n_step_returns_match_hand_computation():
    gamma = 0.9
    r = FrameReplay(capacity=200, num_envs=1, frame_shape=(1, 2, 2), stack=1, n_step=3, gamma=gamma)
    fill(r, 12, terminal_at={6}, episode_end_at={6})
    tr = all_transitions(r)
    # t=2: rewards 2, 3, 4, bootstrap gamma^3 from frame of obs 5 -> value 6
    assert tr[2][1] == pytest.approx(2 + gamma * 3 + gamma**2 * 4)
    assert tr[2][2] == pytest.approx(gamma**3)
    assert tr[2][3][0, 0, 0] == 6
    # t=5: rewards 5, 6 then the episode ends (terminal) -> no bootstrap
    assert tr[5][1] == pytest.approx(5 + gamma * 6)
    assert tr[5][2] == 0.0
    # t=6: single terminal step
    assert tr[6][1] == pytest.approx(6.0) and tr[6][2] == 0.0


def test_wrap_around_keeps_only_recent_and_consistent():
    r = FrameReplay(capacity=20, num_envs=1, frame_shape=(1, 2, 2), stack=4, gamma=0.5)
    fill(r, 100)
    obs, action, reward, discount, next_obs = r.sample_arrays(2000)
    assert action.min() >= 100 - 20             # old transitions overwritten
    for i in range(200):
        t = int(action[i])
        assert obs[i, :, 0, 0].tolist() == [t - 2, t - 1, t, t + 1]   # frames t-2..t+1 (values)
        assert next_obs[i, -1, 0, 0] == t + 2
        assert reward[i] == t


def test_multiple_envs_are_separate_tracks():
    r = FrameReplay(capacity=60, num_envs=3, frame_shape=(1, 2, 2), stack=2, gamma=0.5)
    r.start(np.stack([frame(100 * e) for e in range(3)]))
    for t in range(1, 15):
        nxt = np.stack([frame(100 * e + t) for e in range(3)])
        r.add(np.arange(3) + 3 * t, np.zeros(3), np.zeros(3, bool), np.zeros(3, bool), nxt, nxt)
    obs, action, _, _, next_obs = r.sample_arrays(500)
    env = action % 3
    assert set(env.tolist()) == {0, 1, 2}
    assert np.all(next_obs[:, -1, 0, 0] // 100 == env)
    assert np.all(obs[:, -1, 0, 0] // 100 == env)


def test_state_dict_round_trip_samples_identically():
    r = FrameReplay(capacity=50, num_envs=2, frame_shape=(1, 2, 2), stack=2, seed=3)
    fill(r, 30, episode_end_at={7, 19}, num_envs=2)
    s = r.state_dict()
    r2 = FrameReplay(capacity=50, num_envs=2, frame_shape=(1, 2, 2), stack=2, seed=99)
    r2.load_state_dict(s)
    for a, b in zip(r.sample_arrays(64), r2.sample_arrays(64)):
        np.testing.assert_array_equal(a, b)
    batch = r.sample(8)
    assert batch.obs.dtype == torch.uint8 and batch.action.dtype == torch.int64


def test_memory_of_one_million_atari_transitions():
    frames = 1_000_000 * 84 * 84                       # bytes of uint8 frames, stored once
    meta_per_slot = 4 + 4 + 1 + 1 + 1 + 1              # action int32, reward f32, 4 flags
    r = FrameReplay(capacity=1000, num_envs=1, frame_shape=(1, 84, 84), stack=4)
    assert r.memory_bytes() == 1000 * (84 * 84 + meta_per_slot)
    total_gb = (frames + 1_000_000 * meta_per_slot) / 1e9
    assert total_gb < 7.5
    naive_gb = 2 * 1_000_000 * 4 * 84 * 84 / 1e9       # obs and next_obs stacks
    assert naive_gb > 28 * 0.99


def test_device_storage_samples_what_host_storage_samples():
    """Frames held as a (device) tensor: the same batches as the host arrays, draw for draw."""
    host = FrameReplay(capacity=90, num_envs=3, frame_shape=(1, 2, 2), stack=3, n_step=2, gamma=0.9, seed=5)
    dev = FrameReplay(capacity=90, num_envs=3, frame_shape=(1, 2, 2), stack=3, n_step=2, gamma=0.9, seed=5,
                      storage="cpu")
    for r in (host, dev):
        fill(r, 40, episode_end_at={9, 23}, num_envs=3)
    for _ in range(3):
        a, b = host.sample(64), dev.sample(64)
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    assert dev.memory_bytes() == host.memory_bytes()
    state = dev.state_dict()
    assert isinstance(state["frames"], torch.Tensor) and torch.equal(state["frames"], torch.from_numpy(host.frames))
    again = FrameReplay(capacity=90, num_envs=3, frame_shape=(1, 2, 2), stack=3, n_step=2, gamma=0.9, storage="cpu")
    again.load_state_dict(state)
    for x, y in zip(again.sample(16), dev.sample(16)):
        assert torch.equal(x, y)
