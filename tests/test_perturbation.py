"""The shared engine: initial noise, step normalisations, projection, skipped batches."""

import pytest
import torch

from advtrain.perturbation import delta_norm, find_perturbation, init_delta, normalize_direction, project


def _embeds_and_mask(seed=0):
    torch.manual_seed(seed)
    embeds = torch.randn(3, 5, 4)
    attention = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    return embeds, attention.float().unsqueeze(-1)


def test_init_delta_has_std_sigma_and_zero_padding():
    embeds, mask = _embeds_and_mask()
    big = torch.zeros(64, 50, 32)
    big_mask = torch.ones(64, 50, 1)
    big_mask[:, 40:] = 0
    delta = init_delta(big, big_mask, 0.3)
    assert delta.dtype == torch.float32
    assert torch.all(delta[:, 40:] == 0)
    assert delta[:, :40].std().item() == pytest.approx(0.3, rel=0.02)
    assert torch.all(init_delta(embeds, mask, 0.0) == 0)


@pytest.mark.parametrize("step_norm", ["l2", "linf", "sign", "none"])
def test_normalize_direction_matches_hand_computation(step_norm):
    grad, mask = _embeds_and_mask(1)
    out = normalize_direction(grad, mask, step_norm)
    g = grad * mask
    if step_norm == "l2":
        expected = torch.stack([g[i] / g[i].norm() for i in range(3)])
        torch.testing.assert_close(delta_norm(out, "l2"), torch.ones(3))
    elif step_norm == "linf":
        expected = g / g.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30)
        expected = torch.where(mask.bool().expand_as(g), expected, torch.zeros_like(g))
        real = mask.squeeze(-1).bool()
        torch.testing.assert_close(out.abs().amax(dim=-1)[real], torch.ones(int(real.sum())))
    elif step_norm == "sign":
        expected = g.sign()
    else:
        expected = g
    torch.testing.assert_close(out, expected)
    assert torch.all(out[mask.squeeze(-1) == 0] == 0)


def test_normalize_zero_gradient_stays_zero():
    grad = torch.zeros(2, 3, 4)
    mask = torch.ones(2, 3, 1)
    for step_norm in ("l2", "linf", "sign", "none"):
        assert torch.all(normalize_direction(grad, mask, step_norm) == 0)


def test_project_l2_rescales_only_examples_outside_the_ball():
    delta, mask = _embeds_and_mask(2)
    delta = delta * mask
    delta[2] *= 1e-3  # inside the ball: untouched
    epsilon = 0.5
    out = project(delta, mask, "l2", epsilon)
    norms = delta_norm(out, "l2")
    assert torch.all(norms <= epsilon + 1e-6)
    torch.testing.assert_close(norms[:2], torch.full((2,), epsilon))
    torch.testing.assert_close(out[2], delta[2])
    # rescaled, not clipped: the direction is kept
    torch.testing.assert_close(out[0] / out[0].norm(), delta[0] / delta[0].norm())


def test_project_linf_clamps_elements_and_zeroes_padding():
    delta, mask = _embeds_and_mask(3)
    out = project(delta, mask, "linf", 0.2)
    assert out.abs().max() <= 0.2
    assert torch.all(out[mask.squeeze(-1) == 0] == 0)
    inside = (delta.abs() < 0.2) & mask.bool().expand_as(delta)
    torch.testing.assert_close(out[inside], delta[inside])


@pytest.mark.parametrize("norm,step_norm", [("l2", "l2"), ("l2", "none"), ("linf", "linf"), ("linf", "sign")])
def test_find_perturbation_respects_the_radius_and_padding(norm, step_norm):
    embeds, mask = _embeds_and_mask(4)
    weight = torch.randn(4, 2)

    def objective(delta):
        return ((embeds + delta) @ weight).pow(2).sum()

    result = find_perturbation(
        objective, embeds, mask, steps=5, step_size=0.3, epsilon=0.25, init_std=0.1, norm=norm, step_norm=step_norm
    )
    assert not result.skipped
    assert torch.all(delta_norm(result.delta, norm) <= 0.25 + 1e-6)
    assert torch.all(result.delta[mask.squeeze(-1) == 0] == 0)
    assert delta_norm(result.delta, norm).min() > 0


def test_one_step_matches_hand_computation_and_descend_flips_it():
    embeds, mask = _embeds_and_mask(5)
    weight = torch.randn(4)

    def objective(delta):
        return ((embeds + delta) @ weight).sum()

    # ∇δ of the objective is `weight` on every real token.
    up = find_perturbation(objective, embeds, mask, steps=1, step_size=0.1, epsilon=1.0, init_std=0.0, norm="linf",
                           step_norm="sign")
    down = find_perturbation(objective, embeds, mask, steps=1, step_size=0.1, epsilon=1.0, init_std=0.0, norm="linf",
                             step_norm="sign", descend=True)
    expected = 0.1 * weight.sign() * mask
    torch.testing.assert_close(up.delta, expected)
    torch.testing.assert_close(down.delta, -expected)
    assert objective(up.delta) > objective(torch.zeros_like(embeds)) > objective(down.delta)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_objective_or_gradient_is_skipped(bad):
    embeds, mask = _embeds_and_mask(6)

    def objective(delta):
        return (delta * bad).sum()

    result = find_perturbation(objective, embeds, mask, steps=2, step_size=0.1, epsilon=1.0, init_std=0.1,
                               norm="l2", step_norm="l2")
    assert result.skipped
    assert torch.all(result.delta == 0)


def test_inner_gradient_never_reaches_parameter_grads():
    embeds, mask = _embeds_and_mask(7)
    layer = torch.nn.Linear(4, 2)

    def objective(delta):
        return layer(embeds + delta).pow(2).sum()

    find_perturbation(objective, embeds, mask, steps=3, step_size=0.1, epsilon=1.0, init_std=0.1, norm="l2",
                      step_norm="l2")
    assert layer.weight.grad is None and layer.bias.grad is None
