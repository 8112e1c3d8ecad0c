"""OPMD, AsymRE and REC (polrl.algorithms.off_policy_reinforce): hand values of every transform,
on-policy identities, jit == eager, and each noun's prepare + update on a tiny model."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import advantages, algorithms, objectives
from polrl.algorithms import off_policy_reinforce as opr
from polrl.core import Algorithm, total_loss
from alg_testing import apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, scored, rollout_batch

# groups: 0 = rows 0–2 (rewards 1, 0, 2), 1 = rows 3–4 (flat 3, 3), 2 = row 5 (singleton 5)
REWARD_B = [1.0, 0.0, 2.0, 3.0, 3.0, 5.0]
GROUP_B = [0, 0, 0, 1, 1, 2]
MASK = [[1, 1], [1, 0], [1, 1], [1, 1], [1, 0], [1, 1]]


def _adv_column(t, **extra):
    out = apply(t, hand_batch(MASK, reward_b=REWARD_B, group_b=GROUP_B), **extra)
    np.testing.assert_array_equal(np.asarray(out.adv_bt)[np.asarray(MASK) == 0], 0.0)  # masked tokens
    return np.asarray(out.adv_bt)[:, 0]


# ----------------------------------------------------------------------------- advantages


def test_mean_baseline_with_shift():
    # group 0 mean 1 → A = r − 1 − δ with δ = −0.1: [0.1, −0.9, 1.1]; flat group → 0.1 each;
    # the singleton gets 0 (no baseline can be formed)
    np.testing.assert_allclose(_adv_column(opr.shifted_baseline_advantage()), [0, -1, 1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(
        _adv_column(opr.shifted_baseline_advantage(shift=-0.1)), [0.1, -0.9, 1.1, 0.1, 0.1, 0.0], atol=1e-6
    )


def test_mean_baseline_is_dr_grpo_advantage():
    np.testing.assert_allclose(
        _adv_column(opr.shifted_baseline_advantage()),
        _adv_column(advantages.group_advantage(scale="none")), atol=1e-6,
    )


def test_logavgexp_baseline():
    # τ = 1, group 0: b = log((e¹ + e⁰ + e²)/3) = log(11.107338/3) = 1.308994
    # flat group: b = log((e³ + e³)/2) = 3 → 0; τ = 2: b = 2·log((e^.5 + 1 + e)/3) = 2·log(1.789001) = 1.163315
    b1 = math.log((math.e + 1 + math.e ** 2) / 3)
    np.testing.assert_allclose(b1, 1.308994, atol=1e-6)
    np.testing.assert_allclose(
        _adv_column(opr.shifted_baseline_advantage(baseline="logavgexp")),
        [1 - b1, -b1, 2 - b1, 0, 0, 0], atol=1e-5,
    )
    b2 = 2 * math.log((math.exp(0.5) + 1 + math.e) / 3)
    np.testing.assert_allclose(b2, 1.163315, atol=1e-6)
    np.testing.assert_allclose(
        _adv_column(opr.shifted_baseline_advantage(baseline="logavgexp", tau=2.0)),
        [1 - b2, -b2, 2 - b2, 0, 0, 0], atol=1e-5,
    )


def test_rec_advantage_without_drop():
    # population std of (1, 0, 2) = sqrt(2/3) = 0.816497
    np.testing.assert_allclose(_adv_column(opr.rec_advantage()), [0, -1, 1, 0, 0, 0], atol=1e-6)
    s = math.sqrt(2 / 3)
    np.testing.assert_allclose(
        _adv_column(opr.rec_advantage(std_normalize=True)), [0, -1 / s, 1 / s, 0, 0, 0], atol=1e-5
    )


def test_rec_advantage_balance_drop():
    # group 0 = rewards (1, 0, 0, 0): mean .25, one positive, three negatives → two random
    # negatives dropped (A = 0), the rest re-centred on the kept mean (1 + 0)/2 = .5;
    # group 1 = (1, 1, 0): two positives, one negative → nothing dropped, A = r − 2/3
    reward = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    group = [0, 0, 0, 0, 1, 1, 1]
    batch = hand_batch(np.ones((7, 1)), reward_b=reward, group_b=group)
    t = opr.rec_advantage(drop="balance")
    dropped_sets = set()
    for seed in range(6):
        out = apply(t, batch, rng=jax.random.key(seed))
        adv = np.asarray(out.adv_bt)[:, 0]
        np.testing.assert_allclose(adv[0], 0.5, atol=1e-6)
        negatives = adv[1:4]
        assert sorted(negatives.tolist()) == pytest.approx([-0.5, 0.0, 0.0], abs=1e-6), negatives
        dropped_sets.add(tuple(np.flatnonzero(negatives == 0.0)))
        np.testing.assert_allclose(adv[4:], [1 / 3, 1 / 3, -2 / 3], atol=1e-6)
        np.testing.assert_allclose(out.metrics["drop_frac"], 2 / 7, atol=1e-6)
    assert len(dropped_sets) > 1  # the dropped negatives are drawn at random
    with pytest.raises(ValueError, match="rng"):
        apply(t, batch)


# ----------------------------------------------------------------------------- objectives

# six tokens of one row: ratios 0.5, 0.9, 1.0, 1.1, 1.5, 3.5 with advantages + − + − + −
RATIO = np.array([[0.5, 0.9, 1.0, 1.1, 1.5, 3.5]], np.float32)
ADV = np.array([[1.0, -1.0, 2.0, -2.0, 1.0, -1.0]], np.float32)
LOGP = np.array([[-1.0, -2.0, -0.5, -1.5, -0.2, -3.0]], np.float32)
IN_RANGE = {  # ε_l = ε_h = 0.2, ε′_l = 0.6, ε′_h = 2.0
    "none": [1, 1, 1, 1, 1, 1],
    # A ≥ 0 needs ρ ≤ 1.2 ; A ≤ 0 needs ρ ≥ 0.8
    "one_side": [1, 1, 1, 1, 0, 1],
    # 0.8 ≤ ρ ≤ 1.2
    "two_side": [0, 1, 1, 1, 0, 0],
    # two_side, or (A ≥ 0 ∧ ρ ≤ 0.4), or (A ≤ 0 ∧ ρ ≥ 3.0): only the last token joins
    "ring": [0, 1, 1, 1, 0, 1],
}


def _rec_batch():
    return hand_batch(np.ones((1, 6)), logp_bt=LOGP, old_logp_bt=LOGP - np.log(RATIO), adv_bt=ADV)


@pytest.mark.parametrize("mode", sorted(IN_RANGE))
def test_rec_clip_modes_mask_the_reinforce_term(mode):
    t = opr.rec_policy_gradient(clip_mode=mode)
    batch = _rec_batch()
    out = apply(t, batch)
    keep = np.array(IN_RANGE[mode], np.float32)
    np.testing.assert_allclose(out.terms["pg"], -ADV * keep * LOGP, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["clip_frac"], 1 - keep.mean(), rtol=1e-6)
    # the ratio is detached: d L_t / d log π_t = −A_t·1[in range]
    grad = jax.grad(lambda lp: apply(t, batch.replace(logp_bt=lp)).terms["pg"].sum())(batch.logp_bt)
    np.testing.assert_allclose(grad, -ADV * keep, rtol=1e-6)


def test_rec_gspo_one_side_uses_the_sequence_ratio():
    # sequence ratio = exp(mean log ρ) = (.5 · .9 · 1 · 1.1 · 1.5 · 3.5)^(1/6) = 2.59875^(1/6) = 1.172539
    seq = math.exp(np.log(RATIO).mean())
    np.testing.assert_allclose(seq, 1.172539, rtol=1e-6)
    # ρ̄ ≤ 1.2 keeps A ≥ 0 tokens; ρ̄ ≥ 0.8 keeps A ≤ 0 tokens → everything is in range
    out = apply(opr.rec_policy_gradient(clip_mode="gspo_one_side"), _rec_batch())
    np.testing.assert_allclose(out.terms["pg"], -ADV * LOGP, rtol=1e-6)
    w = apply(opr.rec_policy_gradient(weight="gspo_importance_sampling"), _rec_batch())
    np.testing.assert_allclose(w.terms["pg"], -ADV * seq * LOGP, rtol=1e-5)


@pytest.mark.parametrize("weight, w", [
    ("importance_sampling", RATIO),
    ("truncated_importance_sampling", np.clip(RATIO, 0.4, 3.0)),  # [.5, .9, 1, 1.1, 1.5, 3.0]
    ("advantage", np.exp(ADV / 2.0)),  # temp = 2
])
def test_rec_weights(weight, w):
    t = opr.rec_policy_gradient(weight=weight, temp=2.0)
    out = apply(t, _rec_batch())
    np.testing.assert_allclose(out.terms["pg"], -ADV * w * LOGP, rtol=1e-5)


def test_on_policy_every_mask_and_ratio_weight_is_the_identity():
    # old_logp_bt = None (one update per batch): ρ = 1, so every REC variant is plain REINFORCE
    batch = _rec_batch().replace(old_logp_bt=None)
    for mode in opr.CLIP_MODES:
        for weight in ("none", "importance_sampling", "truncated_importance_sampling", "gspo_importance_sampling"):
            out = apply(opr.rec_policy_gradient(clip_mode=mode, weight=weight), batch)
            np.testing.assert_allclose(out.terms["pg"], -ADV * LOGP, rtol=1e-6, err_msg=f"{mode}/{weight}")
            np.testing.assert_allclose(out.metrics["ratio_mean"], 1.0)


def test_rec_regularizers():
    batch = _rec_batch()
    fkl = apply(opr.rec_regularizer(kind="forward_kl", coef=0.5), batch)
    np.testing.assert_allclose(fkl.terms["reg"], -0.5 * LOGP, rtol=1e-6)
    k2 = apply(opr.rec_regularizer(kind="k2", coef=0.5), batch)
    np.testing.assert_allclose(k2.terms["reg"], 0.5 * np.log(RATIO) ** 2, rtol=1e-5, atol=1e-7)


def test_transform_contract():
    # jit == no-jit, state structure, no recompilation, extras ignored (tests/alg_testing.py)
    for t in (opr.rec_policy_gradient(clip_mode="ring", weight="truncated_importance_sampling"),
              opr.rec_regularizer(kind="k2", coef=0.3)):
        check_transform_contract(t, scored(rollout_batch(seed=0)).replace(adv_bt=jnp.ones((8, 4))),
                                 scored(rollout_batch(seed=1)).replace(adv_bt=-jnp.ones((8, 4))))
    for t in (opr.shifted_baseline_advantage(baseline="logavgexp", tau=0.5, shift=-0.1), opr.rec_advantage(std_normalize=True)):
        check_transform_contract(t, rollout_batch(seed=0), rollout_batch(seed=1))
    for alg in (algorithms.opmd(), algorithms.asymre(), algorithms.rec(clip_mode="ring", weight="importance_sampling")):
        check_algorithm_transforms(alg)


def test_balance_drop_jit_equals_eager():
    t = opr.rec_advantage(drop="balance")
    batch = hand_batch(np.ones((7, 1)), reward_b=[1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0], group_b=[0, 0, 0, 0, 1, 1, 1])
    key = jax.random.key(3)
    jitted = jax.jit(lambda b, k: apply(t, b, rng=k))(batch, key)
    np.testing.assert_array_equal(jitted.adv_bt, apply(t, batch, rng=key).adv_bt)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="clip_mode"):
        opr.rec_policy_gradient(clip_mode="both")
    with pytest.raises(ValueError, match="weight"):
        algorithms.rec(weight="is")
    with pytest.raises(ValueError, match="baseline"):
        algorithms.opmd(baseline="max")
    with pytest.raises(ValueError, match="drop"):
        algorithms.rec(drop="all")
    with pytest.raises(ValueError, match="regularizer"):
        algorithms.rec(regularizer="l2")
    # τ only enters the logavgexp baseline: τ = 0 is refused there, accepted with the mean
    with pytest.raises(ValueError, match="tau"):
        algorithms.opmd(tau=0.0, baseline="logavgexp")
    with pytest.raises(ValueError, match="tau"):
        opr.shifted_baseline_advantage(tau=-0.5)


def test_opmd_tau_zero_is_group_mean_reinforce():
    # τ = 0 with the mean baseline: coefficient 1/(1 + 0) = 1, L = token_mean(−(r − mean_g r)·log π)
    alg, asym = algorithms.opmd(tau=0.0, kl_coef=0.0), algorithms.asymre(baseline_shift=0.0)
    batch = hand_batch(MASK, reward_b=REWARD_B, group_b=GROUP_B)
    logp = -jnp.linspace(0.1, 1.2, 12).reshape(6, 2)
    out = apply(alg.objective, apply(alg.prepare, batch).replace(logp_bt=logp))
    ref = apply(asym.objective, apply(asym.prepare, batch).replace(logp_bt=logp))
    np.testing.assert_allclose(total_loss(out), total_loss(ref), rtol=1e-6)


# ----------------------------------------------------------------------------- nouns


def test_opmd_loss_by_hand():
    # τ = 3: L = token_mean(−A·log π)/(1 + τ) + β·token_mean(½(log π − log π_ref)²)
    alg = algorithms.opmd(tau=3.0, kl_coef=0.5)
    batch = hand_batch(MASK, reward_b=REWARD_B, group_b=GROUP_B)
    prepared = apply(alg.prepare, batch)
    logp = np.array([[-1.0, -2.0], [-0.5, -9.0], [-0.2, -0.4], [-1.0, -1.0], [-3.0, -9.0], [-0.1, -0.3]], np.float32)
    ref = logp + 0.2
    out = apply(alg.objective, prepared.replace(logp_bt=logp, ref_logp_bt=ref))
    m = np.asarray(MASK, np.float32)
    adv = np.array([0, -1, 1, 0, 0, 0], np.float32)[:, None] * m
    pg = (-adv * logp * m).sum() / m.sum() / 4.0  # 10 valid tokens
    # by hand: row 1 (A = −1) token 0: −(−1)(−0.5) = −0.5; row 2 (A = 1): −(−0.2) − (−0.4) = 0.6
    np.testing.assert_allclose(pg, (-0.5 + 0.6) / 10 / 4, rtol=1e-6)
    np.testing.assert_allclose(out.losses["pg"], pg, rtol=1e-5)
    np.testing.assert_allclose(out.losses["kl"], 0.5 * 0.5 * 0.04, rtol=1e-5)  # k2 = ½·0.2² everywhere
    assert alg.needs == {"ref_logp"}
    assert algorithms.opmd(kl_coef=0.0).needs == frozenset()


def test_asymre_is_shifted_reinforce():
    alg = algorithms.asymre()
    assert alg.needs == frozenset()
    batch = hand_batch(MASK, reward_b=REWARD_B, group_b=GROUP_B)
    prepared = apply(alg.prepare, batch)
    np.testing.assert_allclose(np.asarray(prepared.adv_bt)[:, 0], [0.1, -0.9, 1.1, 0.1, 0.1, 0.0], atol=1e-6)
    logp = -jnp.ones((6, 2))
    out = apply(alg.objective, prepared.replace(logp_bt=logp))
    m = np.asarray(MASK, np.float32)
    expected = (np.asarray(prepared.adv_bt) * m).sum() / m.sum()  # −A·(−1) = A, token mean
    np.testing.assert_allclose(total_loss(out), expected, rtol=1e-6)


@pytest.mark.parametrize("name, kwargs", [
    ("opmd", dict(learning_rate=1e-2)),
    ("asymre", dict(learning_rate=1e-2)),
    ("rec", dict(learning_rate=1e-2, num_minibatches=2, drop="balance", regularizer="k2", regularizer_coef=0.1)),
])
def test_noun_prepare_and_update_on_a_tiny_model(name, kwargs):
    alg = getattr(algorithms, name)(**kwargs)
    assert isinstance(alg, Algorithm)
    metrics = assert_trained(alg, expected_metrics={"pg", "loss", "grad_norm", "clip_frac", "ratio_mean"})
    if name == "rec":
        assert {"drop_frac", "reg"} <= set(metrics)
        # two minibatches: the second sees π_θ ≠ π_old, so the detached ratio moved off 1
        assert abs(float(metrics["ratio_mean"]) - 1.0) > 1e-6
