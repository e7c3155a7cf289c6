import torch
import pytest

from rlsmooth.pieces.value_losses import categorical_loss, categorical_projection, double_td_target, q_loss, td_target


def test_td_target_and_double_target():
    reward = torch.tensor([1.0, 0.0])
    discount = torch.tensor([0.9, 0.0])
    next_q = torch.tensor([[1.0, 3.0], [5.0, 2.0]])
    assert td_target(reward, discount, next_q).tolist() == pytest.approx([1 + 0.9 * 3, 0.0])
    online = torch.tensor([[9.0, 0.0], [0.0, 9.0]])   # online picks action 0 for the first sample
    assert double_td_target(reward, discount, next_q, online).tolist() == pytest.approx([1 + 0.9 * 1, 0.0])


def test_huber_and_mse_losses():
    q = torch.tensor([[0.0, 3.0]])
    action = torch.tensor([1])
    assert q_loss(q, action, torch.tensor([0.5]), "mse").item() == pytest.approx(2.5 ** 2)
    assert q_loss(q, action, torch.tensor([0.5]), "huber").item() == pytest.approx(2.5 - 0.5)
    assert q_loss(q, action, torch.tensor([2.5]), "huber").item() == pytest.approx(0.5 * 0.5 ** 2)


def test_projection_hand_cases():
    support = torch.tensor([-1.0, 0.0, 1.0])
    # all mass on atom 0 (z=0), reward 0.5, no discount: 0.5 -> half on z=0, half on z=1
    p = torch.tensor([[0.0, 1.0, 0.0]])
    out = categorical_projection(p, torch.tensor([0.5]), torch.tensor([0.0]), support)
    assert out[0].tolist() == pytest.approx([0.0, 0.5, 0.5])
    # discount 0.5 shrinks z=1 to 0.5 and z=-1 to -0.5; reward 0
    p = torch.tensor([[0.5, 0.0, 0.5]])
    out = categorical_projection(p, torch.tensor([0.0]), torch.tensor([0.5]), support)
    assert out[0].tolist() == pytest.approx([0.25, 0.5, 0.25])
    # values beyond the support are clipped onto its ends; exact atom hits keep all their mass
    p = torch.tensor([[1 / 3, 1 / 3, 1 / 3]])
    out = categorical_projection(p, torch.tensor([5.0]), torch.tensor([1.0]), support)
    assert out[0].tolist() == pytest.approx([0.0, 0.0, 1.0])
    out = categorical_projection(p, torch.tensor([1.0]), torch.tensor([1.0]), support)
    assert out[0].tolist() == pytest.approx([0.0, 1 / 3, 2 / 3])


def test_projection_preserves_mass_and_mean_inside_support():
    torch.manual_seed(0)
    support = torch.linspace(-10, 10, 51)
    p = torch.softmax(torch.randn(64, 51), 1)
    reward = torch.rand(64) - 0.5
    discount = torch.full((64,), 0.5)
    out = categorical_projection(p, reward, discount, support)
    assert torch.allclose(out.sum(1), torch.ones(64), atol=1e-6)
    # a linear interpolation onto the grid keeps the mean when nothing is clipped
    expected_mean = reward + discount * (p * support).sum(1)
    assert torch.allclose((out * support).sum(1), expected_mean, atol=1e-4)


def test_categorical_loss_is_cross_entropy():
    logits = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])     # (B=1, A=2, atoms=2)
    target = torch.tensor([[1.0, 0.0]])
    loss = categorical_loss(logits, torch.tensor([1]), target)
    assert loss.item() == pytest.approx(-torch.log_softmax(torch.tensor([1.0, 0.0]), 0)[0].item())


def test_linear_epsilon_schedule():
    from rlsmooth.agents.dqn import linear_epsilon
    # held at 1 during the 100-step warm-up, then linear to 0.1 over 200 steps, then flat
    assert linear_epsilon(50, 1.0, 0.1, 200, 100) == 1.0
    assert linear_epsilon(200, 1.0, 0.1, 200, 100) == pytest.approx(0.55)
    assert linear_epsilon(10_000, 1.0, 0.1, 200, 100) == pytest.approx(0.1)
