"""GEPO / OORL (polrl.algorithms.gepo): the group equivalent preference loss against numpy, its
gradient by hand, its invariances, the GRPO part on the policy's rows only, jit == no-jit, the
noun's options and one update on a tiny model."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.gepo import group_equivalent_preference, group_equivalent_preference_loss, policy_rows
from polrl.core import EXPERT, ON_POLICY, total_loss
from alg_testing import apply, check_transform_contract, hand_batch, rollout_batch, scored, train_once


def numpy_gepo(logratio, winner, loser, group, beta, lam):
    """L_GEPO in float64, one group at a time, from the formula."""
    losses = []
    for g in sorted(set(group)):
        w = [beta * r for r, k, s in zip(logratio, group, winner) if k == g and s]
        l = [beta * r for r, k, s in zip(logratio, group, loser) if k == g and s]
        if not w or not l:
            continue
        mean_w, mean_l = sum(w) / len(w), sum(l) / len(l)
        var_w = sum((r - mean_w) ** 2 for r in w) / len(w)
        losses.append(math.log1p(math.exp(-(mean_w - mean_l))) + lam * var_w)
    return sum(losses) / len(losses) if losses else 0.0


# three groups: (2 winners, 2 losers), (3 winners, no loser: left out), (1 winner, 2 losers, 1 row on neither side)
LOGRATIO = np.array([2.0, 1.0, -1.0, 0.5, 0.3, -0.2, 0.9, 1.5, -2.0, 0.25, 4.0])
WINNER = np.array([1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0], bool)
LOSER = np.array([0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0], bool)
GROUP = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2], np.int32)


def test_loss_hand_values():
    # group 0, β = .5: r̂ = (1, .5 | −.5, .25): margin .75 − (−.125) = .875, Var_W = .0625
    g0 = math.log1p(math.exp(-0.875)) + 0.0625
    # group 2: r̂_W = (.75), r̂_L = (−1, .125): margin .75 + .4375 = 1.1875, Var_W = 0
    g2 = math.log1p(math.exp(-1.1875))
    loss, margin, var, valid = group_equivalent_preference_loss(
        jnp.asarray(LOGRATIO), jnp.asarray(WINNER), jnp.asarray(LOSER), jnp.asarray(GROUP), 11, beta=0.5, lambda_=1.0)
    np.testing.assert_allclose(float(loss), (g0 + g2) / 2, rtol=1e-6)
    np.testing.assert_allclose(float(loss), numpy_gepo(LOGRATIO, WINNER, LOSER, GROUP, 0.5, 1.0), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(valid)[:3], [True, False, True])
    np.testing.assert_allclose(np.asarray(margin)[[0, 2]], [0.875, 1.1875], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(var)[:3], [0.0625, 0.25 * np.var([0.3, -0.2, 0.9]), 0.0], rtol=1e-5, atol=1e-8)
    # λ scales the variance term only; no valid group gives 0
    lam3, *_ = group_equivalent_preference_loss(
        jnp.asarray(LOGRATIO), jnp.asarray(WINNER), jnp.asarray(LOSER), jnp.asarray(GROUP), 11, beta=0.5, lambda_=3.0)
    np.testing.assert_allclose(float(lam3), (g0 + 2 * 0.0625 + g2) / 2, rtol=1e-6)
    none, *_ = group_equivalent_preference_loss(
        jnp.asarray(LOGRATIO), jnp.asarray(WINNER), jnp.zeros(11, bool), jnp.asarray(GROUP), 11, beta=0.5, lambda_=1.0)
    assert float(none) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_against_numpy_on_random_groups(seed):
    rng = np.random.default_rng(seed)
    n = 24
    logratio = rng.normal(0, 3, n)
    side = rng.integers(0, 3, n)  # 0 winner, 1 loser, 2 neither
    group = rng.integers(0, 6, n).astype(np.int32)
    beta, lam = float(rng.uniform(0.05, 1)), float(rng.uniform(0, 2))
    loss, *_ = group_equivalent_preference_loss(
        jnp.asarray(logratio, jnp.float32), jnp.asarray(side == 0), jnp.asarray(side == 1), jnp.asarray(group), n,
        beta=beta, lambda_=lam)
    expected = numpy_gepo(logratio, side == 0, side == 1, group, beta, lam)
    # float32 inputs: relative error of a few ulps per operation over sums of ≤ 24 terms
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=1e-6)


def test_loss_invariances():
    args = (jnp.asarray(WINNER), jnp.asarray(LOSER), jnp.asarray(GROUP), 11)
    base, *_ = group_equivalent_preference_loss(jnp.asarray(LOGRATIO), *args, beta=0.5, lambda_=1.0)
    # a constant per group (a prompt-only term such as log Z(x)) cancels in the margin and the variance
    shifted, *_ = group_equivalent_preference_loss(jnp.asarray(LOGRATIO + np.array([3.0, -7.0, 0.5])[GROUP]), *args,
                                                   beta=0.5, lambda_=1.0)
    np.testing.assert_allclose(float(shifted), float(base), rtol=1e-5)
    # permuting the rows changes nothing
    perm = np.random.default_rng(0).permutation(11)
    permuted, *_ = group_equivalent_preference_loss(
        jnp.asarray(LOGRATIO[perm]), jnp.asarray(WINNER[perm]), jnp.asarray(LOSER[perm]), jnp.asarray(GROUP[perm]), 11,
        beta=0.5, lambda_=1.0)
    np.testing.assert_allclose(float(permuted), float(base), rtol=1e-6)


def _batch(reward, group, logp, ref, mask, source=None):
    fields = dict(reward_b=reward, group_b=group, logp_bt=logp, ref_logp_bt=ref)
    if source is not None:
        fields["source_b"] = source
    return hand_batch(mask, **fields)


# one group of four rows: rewards (1, 1, 0, .5) → winners rows 0, 1; losers rows 2, 3; row 3 has one token
MASK = np.array([[1, 1], [1, 1], [1, 1], [1, 0]], np.float32)
LOGP = np.array([[-1.0, -2.0], [-0.5, -0.5], [-3.0, -1.0], [-2.0, -9.0]], np.float32)
REF = np.array([[-1.5, -1.5], [-1.0, -1.0], [-2.0, -1.5], [-1.0, -9.0]], np.float32)
REWARD = np.array([1.0, 1.0, 0.0, 0.5], np.float32)


def test_transform_values_and_gradient():
    beta, lam, coef = 0.5, 2.0, 0.3
    t = group_equivalent_preference(beta=beta, lambda_=lam, coef=coef)
    assert t.needs == {"ref_logp"}
    batch = _batch(REWARD, [0, 0, 0, 0], LOGP, REF, MASK)
    out = apply(t, batch)
    # Σ_t (log π − log π_ref) over valid tokens: (0, 1, −0.5, −1) → r̂ = (0, .5 | −.25, −.5)
    mean_w, mean_l = 0.25, -0.375
    var_w = 0.0625
    loss = math.log1p(math.exp(-(mean_w - mean_l))) + lam * var_w
    np.testing.assert_allclose(float(out.losses["gepo"]), coef * loss, rtol=1e-6)
    np.testing.assert_allclose(float(out.metrics["gepo_loss"]), loss, rtol=1e-6)
    np.testing.assert_allclose(float(out.metrics["gepo_margin"]), 0.625, rtol=1e-6)
    np.testing.assert_allclose(float(out.metrics["gepo_winner_var"]), var_w, rtol=1e-6)
    assert float(out.metrics["gepo_accuracy"]) == 1.0 and float(out.metrics["gepo_groups"]) == 1.0
    # d/d log π(y_t) on a valid token of row i, with s = σ(−margin):
    #   winner: coef·(−s·β/|W| + λ·2β(r̂_i − mean_W)/|W|);  loser: coef·s·β/|L|;  masked tokens: 0
    s = 1 / (1 + math.exp(0.625))
    per_row = [coef * (-s * beta / 2 + lam * 2 * beta * (0.0 - mean_w) / 2),
               coef * (-s * beta / 2 + lam * 2 * beta * (0.5 - mean_w) / 2),
               coef * s * beta / 2, coef * s * beta / 2]
    grad = jax.grad(lambda lp: apply(t, batch.replace(logp_bt=lp)).losses["gepo"])(batch.logp_bt)
    np.testing.assert_allclose(np.asarray(grad), np.array(per_row)[:, None] * MASK, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="beta"):
        group_equivalent_preference(beta=0.0)
    with pytest.raises(ValueError, match="lambda_"):
        group_equivalent_preference(lambda_=-1.0)


def test_rows_without_tokens_are_on_neither_side():
    t = group_equivalent_preference(beta=1.0, lambda_=1.0, coef=1.0)
    masked = MASK.copy()
    masked[1] = 0.0  # row 1 (a winner) filtered out: the winners are row 0 alone
    out = apply(t, _batch(REWARD, [0, 0, 0, 0], LOGP, REF, masked))
    expected = numpy_gepo([0.0, 1.0, -0.5, -1.0], [True, False, False, False], [False, False, True, True],
                          [0, 0, 0, 0], 1.0, 1.0)
    np.testing.assert_allclose(float(out.metrics["gepo_loss"]), expected, rtol=1e-6)


def test_grpo_part_sees_the_policy_rows_and_gepo_every_row():
    source = np.array([ON_POLICY, ON_POLICY, ON_POLICY, EXPERT], np.int32)
    alg = algorithms.gepo(kl_coef=0.0, aggregation="token_mean", gepo_coef=0.0)
    batch = _batch(REWARD, [0, 0, 0, 0], LOGP, REF, MASK, source=source)
    prepared = apply(alg.prepare, batch)
    # advantages over the three policy rows (1, 1, 0): mean 2/3, std 1/√3 → (1/√3, 1/√3, −2/√3); expert 0
    r3 = 1 / math.sqrt(3)
    np.testing.assert_allclose(np.asarray(prepared.adv_bt), np.array([r3, r3, -2 * r3, 0.0])[:, None] * MASK, rtol=1e-5)
    policy_only = prepared.replace(mask_bt=prepared.mask_bt * (source != EXPERT)[:, None])
    grpo = algorithms.grpo(kl_coef=0.0, aggregation="token_mean")

    def value_and_grad(objective, b):
        return jax.value_and_grad(lambda lp: total_loss(apply(objective, b.replace(logp_bt=lp))))(b.logp_bt)

    value, grad = value_and_grad(alg.objective, prepared)
    ref_value, ref_grad = value_and_grad(grpo.objective, policy_only)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(np.asarray(grad)[3], 0.0)  # the labelled row: no policy-gradient term
    # GEPO adds its term over all four rows, the labelled one among the winners
    with_gepo = apply(algorithms.gepo(kl_coef=0.0, aggregation="token_mean", gepo_coef=0.5, beta=1.0).objective, prepared)
    alone = apply(group_equivalent_preference(beta=1.0, lambda_=1.0, coef=0.5), prepared)
    np.testing.assert_allclose(float(with_gepo.losses["gepo"]), float(alone.losses["gepo"]), rtol=1e-6)
    np.testing.assert_allclose(float(with_gepo.losses["pg"]), float(value), rtol=1e-6)
    # policy_rows without source_b is the objective itself
    assert float(apply(policy_rows(grpo.objective), policy_only.replace(source_b=None)).losses["pg"]) == pytest.approx(float(ref_value))


def test_objective_contract_jit_equals_no_jit():
    alg = algorithms.gepo(kl_coef=0.01, entropy_coef=0.001)
    source = np.array([ON_POLICY, ON_POLICY, ON_POLICY, EXPERT] * 2, np.int32)

    def batch(seed):
        b = rollout_batch(seed=seed)
        return scored(b.replace(source_b=source, reward_b=np.where(source == EXPERT, 1.0, b.reward_b).astype(np.float32)), seed)

    check_transform_contract(alg.prepare, batch(0), batch(1))
    prepared = [apply(alg.prepare, batch(s)) for s in (0, 1)]
    out = check_transform_contract(alg.objective, *prepared)
    assert set(out.losses) == {"pg", "kl", "entropy", "gepo"}
    assert {"gepo_margin", "gepo_accuracy", "gepo_winner_var", "gepo_groups", "clip_frac"} <= set(out.metrics)


def test_noun_options():
    assert algorithms.gepo().needs == {"ref_logp"}
    assert algorithms.gepo(kl_coef=0.0).needs == {"ref_logp"}  # GEPO's implicit reward needs π_ref
    assert algorithms.gepo().collector is not None
    assert algorithms.gepo(expert_per_group=0).collector is None
    with pytest.raises(ValueError, match="expert_per_group"):
        algorithms.gepo(expert_per_group=-1)
    with pytest.raises(TypeError, match="kl_in"):
        algorithms.gepo(kl_in="reward")


def test_one_update_on_a_tiny_model():
    alg = algorithms.gepo(learning_rate=1e-2, gepo_coef=1.0, expert_per_group=0)
    state, metrics, params = train_once(alg)
    assert int(state.step) == 1
    assert {"pg", "kl", "gepo", "gepo_margin", "gepo_groups", "loss", "grad_norm"} <= set(metrics)
    for key, value in metrics.items():
        assert np.all(np.isfinite(value)), (key, value)
    # rollout_batch's groups: rewards (1, 0, 0, 1) and (.5, 0, 1, 1) both have winners and losers
    assert float(metrics["gepo_groups"]) == 2.0
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)))
    assert moved > 1e-4
