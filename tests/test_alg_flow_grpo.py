"""Flow-GRPO (polrl.algorithms.flow_grpo): the outcome broadcast to every turn, each turn's
token mean averaged over the trajectory's turns, observation tokens masked out."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.flow_grpo import turn_weights
from polrl.core import total_loss
from alg_testing import apply, check_transform_contract, hand_batch, rollout_batch, scored, train_once

# Two groups of two trajectories (rewards 1, 0 | 0, 1) over 6 response columns; m = generated
# tokens, turn = the turn of each token (observation tokens carry their turn, padding −1).
MASK = [[1, 1, 0, 1, 0, 0],   # turn 0: 2 tokens, an observation, turn 1: 1 token
        [1, 1, 1, 0, 0, 0],   # one turn of 3 tokens
        [0, 1, 0, 0, 1, 1],   # reset observation, turn 0: 1 token, observation, turn 1: 2 tokens
        [1, 1, 1, 1, 0, 0]]   # turn 0: 1 token, turn 1: 3 tokens
TURN = [[0, 0, 1, 1, -1, -1],
        [0, 0, 0, -1, -1, -1],
        [0, 0, 1, 1, 1, 1],
        [0, 1, 1, 1, -1, -1]]
REWARD = [1.0, 0.0, 0.0, 1.0]
# 1 / |a_i^t| on each generated token
WEIGHTS = [[1 / 2, 1 / 2, 0, 1, 0, 0],
           [1 / 3, 1 / 3, 1 / 3, 0, 0, 0],
           [0, 1, 0, 0, 1 / 2, 1 / 2],
           [1, 1 / 3, 1 / 3, 1 / 3, 0, 0]]
# group advantages: mean 0.5, unbiased std 1/√2, A = ±0.5 / (1/√2 + 1e-6)
A = 0.5 / (2 ** -0.5 + 1e-6)
RATIO = [[1.1, 0.5, 1.0, 2.0, 1.0, 1.0],
         [1.0, 1.0, 0.5, 1.0, 1.0, 1.0],
         [1.0, 1.0, 1.0, 1.0, 2.0, 1.0],
         [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]


def batch(reward=REWARD, ratio=RATIO, ref_shift=None):
    logp = np.full((4, 6), -1.0)
    out = hand_batch(MASK, reward_b=reward, group_b=[0, 0, 1, 1], logp_bt=logp,
                     old_logp_bt=logp - np.log(ratio),
                     ref_logp_bt=logp + (0.0 if ref_shift is None else ref_shift))
    return out.replace(aux={"turn_bt": jnp.asarray(TURN, jnp.int32)})


def objective(alg, b):
    return apply(alg.objective, apply(alg.prepare, b))


def test_turn_weights_by_hand():
    out = apply(turn_weights(), batch())
    np.testing.assert_allclose(out.mask_bt, WEIGHTS, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.mask_bt).sum(axis=1), [2, 1, 2, 2], rtol=1e-6)  # T_i turns


def test_clipped_objective_by_hand():
    out = objective(algorithms.flow_grpo(kl_coef=0.0), batch())
    # ε_low = 0.2, ε_high = 0.3; L = max(−Aρ, −A clip(ρ, 0.8, 1.3)):
    #   row 0 (A = +a): turn 0 ρ = 1.1, 0.5 → −1.1a, −0.5a (mean −0.8a); turn 1 ρ = 2 → −1.3a;
    #                   trajectory (−0.8a − 1.3a) / 2 = −1.05a
    #   row 1 (A = −a): ρ = 1, 1, 0.5 → a, a, 0.8a (clip(0.5) = 0.8 is the max) → 2.8a / 3
    #   row 2 (A = −a): turn 0 → a; turn 1 ρ = 2, 1 → 2a, a (mean 1.5a) → (a + 1.5a) / 2 = 1.25a
    #   row 3 (A = +a): −a everywhere → −a
    # L = (−1.05 + 2.8/3 + 1.25 − 1) a / 4 = a / 30
    np.testing.assert_allclose(out.losses["pg"], A / 30, rtol=1e-6)
    # GRPO's token mean per trajectory on the same tokens weighs turns by their length:
    # rows −(1.1 + 0.5 + 1.3)a/3, 2.8a/3, 4a/3, −a → 0.3a / 4
    grpo = objective(algorithms.grpo(kl_coef=0.0, eps_high=0.3), batch())
    np.testing.assert_allclose(grpo.losses["pg"], 0.075 * A, rtol=1e-6)


def test_kl_is_weighted_like_the_policy_term():
    # All rewards equal: A = 0. One token (row 0, turn 1, alone in its turn) has
    # log π_ref − log π_θ = ln 2: k3 = 2 − ln 2 − 1; row 0 averages its 2 turns, 4 rows.
    shift = np.zeros((4, 6))
    shift[0, 3] = np.log(2.0)
    out = objective(algorithms.flow_grpo(kl_coef=0.5), batch(reward=[1.0] * 4, ratio=np.ones((4, 6)), ref_shift=shift))
    np.testing.assert_allclose(out.losses["kl"], 0.5 * (1 - np.log(2.0)) / 2 / 4, rtol=1e-6)
    np.testing.assert_allclose(out.losses["pg"], 0.0, atol=1e-7)


def test_gradient_weights_every_turn_equally():
    alg = algorithms.flow_grpo(kl_coef=0.0)
    prepared = apply(alg.prepare, batch(ratio=np.ones((4, 6))))
    grad = jax.grad(lambda lp: total_loss(apply(alg.objective, prepared.replace(logp_bt=lp, old_logp_bt=None))))(
        prepared.logp_bt)
    # on-policy: ∂L/∂log π = −A_i / (G · T_i · |a_i^t|) with G = 4 trajectories, T_i = 2, 1, 2, 2
    sign = np.array([1.0, -1.0, -1.0, 1.0])[:, None]
    turns = np.array([2.0, 1.0, 2.0, 2.0])[:, None]
    np.testing.assert_allclose(grad, -sign * A * np.array(WEIGHTS) / (4 * turns), rtol=1e-6, atol=1e-9)


def test_one_turn_is_grpo():
    b = scored(rollout_batch(seed=3), seed=3)
    one_turn = b.replace(aux={"turn_bt": jnp.where(b.mask_bt > 0, 0, -1).astype(jnp.int32)})
    flow = objective(algorithms.flow_grpo(kl_coef=0.1, eps_high=0.3), one_turn)
    grpo = objective(algorithms.grpo(kl_coef=0.1, eps_high=0.3), b)
    for name in ("pg", "kl"):
        np.testing.assert_allclose(flow.losses[name], grpo.losses[name], rtol=1e-6, atol=1e-7)


def test_missing_turns_and_wrong_options_are_clear_errors():
    with pytest.raises(ValueError, match=r"aux field\(s\) \['turn_bt'\].*polrl.collectors.turns"):
        apply(algorithms.flow_grpo().prepare, hand_batch(MASK, reward_b=REWARD, group_b=[0, 0, 1, 1]))
    with pytest.raises(TypeError, match=r"flow_grpo\(\) got unexpected keyword argument\(s\) \['aggregation'\]"):
        algorithms.flow_grpo(aggregation="token_mean")


def _turn_batch(seed):
    b = scored(rollout_batch(seed=seed), seed=seed)
    turn = np.where(np.asarray(b.mask_bt) > 0, np.array([0, 0, 1, 1]), -1).astype(np.int32)
    return b.replace(aux={"turn_bt": jnp.asarray(turn)})


def test_transforms_contract_and_train_step():
    alg = algorithms.flow_grpo(kl_coef=0.05, filter_zero_variance=True)
    prepared = check_transform_contract(alg.prepare, _turn_batch(0), _turn_batch(1))
    other, _ = alg.prepare.apply(_turn_batch(1), alg.prepare.init())
    out = check_transform_contract(alg.objective, prepared, other)
    assert out.terms == {} and set(out.losses) == {"pg", "kl"}
    batch = _turn_batch(0).replace(logp_bt=None, old_logp_bt=None, ref_logp_bt=None, entropy_bt=None)
    state, metrics, params = train_once(algorithms.flow_grpo(learning_rate=1e-2), batch)
    assert int(state.step) == 1 and all(np.all(np.isfinite(v)) for v in metrics.values())
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)))
    assert moved > 1e-4
    np.testing.assert_allclose(metrics["ratio_mean"], 1.0, atol=1e-6)  # one update: π_old = π_θ
