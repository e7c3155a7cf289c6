import pytest
import torch

from rlsmooth.pieces.policy_losses import gae, ppo_policy_loss, value_loss


def test_gae_matches_hand_computation():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])
    last = torch.tensor([3.0])
    adv, ret = gae(rewards, values, dones, last, gamma, lam)
    d2 = 2.0 + gamma * 3.0 - 1.5
    d1 = 0.0 - 1.0                          # done: no bootstrap, no carry from t=2
    d0 = 1.0 + gamma * 1.0 - 0.5
    expected = [d0 + gamma * lam * d1, d1, d2]
    assert adv[:, 0].tolist() == pytest.approx(expected)
    assert ret[:, 0].tolist() == pytest.approx([e + v for e, v in zip(expected, [0.5, 1.0, 1.5])])


def test_gae_with_lambda_one_is_discounted_return_minus_value():
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.zeros(3, 1)
    adv, _ = gae(rewards, values, torch.zeros(3, 1), torch.tensor([10.0]), 0.5, 1.0)
    assert adv[0, 0].item() == pytest.approx(1 + 0.5 + 0.25 + 0.125 * 10)


def test_ppo_policy_loss_hand_cases():
    old = torch.log(torch.tensor([0.5, 0.5]))
    new = torch.log(torch.tensor([0.75, 0.25]))     # ratios 1.5 and 0.5
    adv = torch.tensor([1.0, -1.0])
    # ratio 1.5, A=+1 -> clipped to 1.2: -1.2 ; ratio 0.5, A=-1 -> max(0.5, 0.8) = 0.8
    assert ppo_policy_loss(new, old, adv, 0.2).item() == pytest.approx((-1.2 + 0.8) / 2)
    # inside the trust region the loss is the plain surrogate
    assert ppo_policy_loss(old, old, adv, 0.2).item() == pytest.approx(0.0)


def test_value_loss_clipping():
    ret = torch.tensor([1.0])
    old = torch.tensor([0.0])
    new = torch.tensor([0.5])
    assert value_loss(new, ret).item() == pytest.approx(0.5 * 0.25)
    # clipped prediction 0.1 is further from the return: the max picks it
    assert value_loss(new, ret, old, clip=0.1).item() == pytest.approx(0.5 * 0.81)


def test_vectorised_gae_matches_the_recursion():
    """The loop-free GAE against the textbook backward recursion, with dones scattered through."""
    torch.manual_seed(0)
    steps, n, gamma, lam = 37, 5, 0.99, 0.95
    rewards, values = torch.randn(steps, n, dtype=torch.float64), torch.randn(steps, n, dtype=torch.float64)
    dones = (torch.rand(steps, n) < 0.1).to(torch.float64)
    last = torch.randn(n, dtype=torch.float64)
    adv, ret = gae(rewards, values, dones, last, gamma, lam)
    expected = torch.zeros_like(rewards)
    running, next_value = torch.zeros(n, dtype=torch.float64), last
    for t in reversed(range(steps)):
        delta = rewards[t] + gamma * next_value * (1 - dones[t]) - values[t]
        running = delta + gamma * lam * (1 - dones[t]) * running
        expected[t], next_value = running, values[t]
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)
