"""CHORD (polrl.algorithms.chord): μ schedule and φ-weighted SFT by hand, advantages over the
policy's rows only, μ = 0 → the RL part, μ = 1 → the SFT part, and a prepare + update on a
tiny model with expert rows."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, objectives
from polrl.algorithms.chord import mix_by_source, mu_schedule, weighted_nll
from polrl.core import EXPERT, ON_POLICY, chain, total_loss
from alg_testing import apply, assert_trees_close, check_transform_contract, hand_batch, rollout_batch, scored, train_once

# two groups of four; the last row of each group is the expert's answer (reward 1)
SOURCE_B = np.array([ON_POLICY, ON_POLICY, ON_POLICY, EXPERT] * 2, np.int32)


def expert_batch(seed=0):
    batch = rollout_batch(seed=seed)
    expert = SOURCE_B == EXPERT
    return batch.replace(
        source_b=SOURCE_B,
        reward_b=np.where(expert, 1.0, batch.reward_b).astype(np.float32),
        behavior_logp_bt=np.where(expert[:, None], 0.0, batch.behavior_logp_bt).astype(np.float32),
    )


def prepared(alg, seed=0):
    return scored(apply(alg.prepare, expert_batch(seed)), seed=seed)


# ----------------------------------------------------------------------------- μ schedule


@pytest.mark.parametrize("step, mu", [
    (0, 0.0), (100, 0.25), (200, 0.5),  # linear warm-up to the peak over W = 200
    (400, 0.26),  # half-way through D = 400: .02 + .48·½(1 + cos(π/2)) = .02 + .24
    (500, 0.02 + 0.48 * 0.5 * (1 + math.cos(0.75 * math.pi))),  # = 0.090294
    (600, 0.02), (5000, 0.02),  # the valley after W + D
])
def test_mu_schedule_hand_values(step, mu):
    got = mu_schedule(step, warmup_steps=200, decay_steps=400, peak=0.5, valley=0.02)
    np.testing.assert_allclose(got, mu, rtol=1e-5, atol=1e-7)
    jitted = jax.jit(lambda s: mu_schedule(s, warmup_steps=200, decay_steps=400, peak=0.5, valley=0.02))
    np.testing.assert_allclose(jitted(jnp.int32(step)), got, rtol=1e-6)


def test_mu_schedule_constant_and_chord_mu_preset():
    # Trinity's defaults W = D = 0 (CHORD-φ): μ = valley = 0.1 at every step
    for s in (0, 1, 10_000):
        np.testing.assert_allclose(mu_schedule(s, warmup_steps=0, decay_steps=0, peak=0.1, valley=0.1), 0.1, rtol=1e-6)
    # CHORD-μ: W = 0, D = 200, peak .9 → valley .05: starts at the peak, .475 at step 100
    np.testing.assert_allclose(mu_schedule(0, warmup_steps=0, decay_steps=200, peak=0.9, valley=0.05), 0.9, rtol=1e-6)
    np.testing.assert_allclose(mu_schedule(100, warmup_steps=0, decay_steps=200, peak=0.9, valley=0.05), 0.475, rtol=1e-6)
    with pytest.raises(ValueError, match="warmup_steps"):
        mu_schedule(0, warmup_steps=-1, decay_steps=0, peak=0.1, valley=0.1)


# ----------------------------------------------------------------------------- SFT weighting

P = np.array([[0.5, 0.9, 0.1]], np.float32)


@pytest.mark.parametrize("weighting, w", [
    ("phi", [0.25, 0.09, 0.09]),  # p(1 − p)
    ("none", [1.0, 1.0, 1.0]),
    ("is", [0.5, 0.9, 0.1]),  # p
])
def test_weighted_nll_values_and_gradient(weighting, w):
    t = weighted_nll(weighting=weighting)
    batch = hand_batch(np.ones((1, 3)), logp_bt=np.log(P))
    out = apply(t, batch)
    np.testing.assert_allclose(out.terms["sft"], -np.array([w]) * np.log(P), rtol=1e-5)
    # the weight is detached: dL/d log p = −w
    grad = jax.grad(lambda lp: apply(t, batch.replace(logp_bt=lp)).terms["sft"].sum())(batch.logp_bt)
    np.testing.assert_allclose(grad, -np.array([w]), rtol=1e-5)


def test_weighted_nll_cutoff():
    # c = 0.8 caps log p = log .9 at log .8 (gradient 0 there); φ still uses p = .9
    t = weighted_nll(cutoff_prob=0.8)
    batch = hand_batch(np.ones((1, 3)), logp_bt=np.log(P))
    out = apply(t, batch)
    np.testing.assert_allclose(out.terms["sft"], [[-0.25 * math.log(0.5), -0.09 * math.log(0.8), -0.09 * math.log(0.1)]], rtol=1e-5)
    grad = jax.grad(lambda lp: apply(t, batch.replace(logp_bt=lp)).terms["sft"].sum())(batch.logp_bt)
    np.testing.assert_allclose(grad, [[-0.25, 0.0, -0.09]], rtol=1e-5)
    with pytest.raises(ValueError, match="cutoff_prob"):
        weighted_nll(cutoff_prob=0.0)
    with pytest.raises(ValueError, match="weighting"):
        weighted_nll(weighting="sqrt")


# ----------------------------------------------------------------------------- advantages


def test_advantages_come_from_the_policy_rows_only():
    alg = algorithms.chord()
    adv = np.asarray(apply(alg.prepare, expert_batch()).adv_bt)
    # group 0 policy rewards (1, 0, 0): mean 1/3, unbiased std √(1/3) → (2/√3, −1/√3, −1/√3)
    # group 1 policy rewards (.5, 0, 1): mean .5, std .5 → (0, −1, 1); expert rows → 0
    s3 = math.sqrt(3)
    expected = np.array([2 / s3, -1 / s3, -1 / s3, 0, 0, -1, 1, 0], np.float32)
    mask = np.asarray(expert_batch().mask_bt)
    np.testing.assert_allclose(adv, expected[:, None] * mask, atol=1e-5)
    # the plain GRPO advantage would count the expert's reward in the group statistics
    plain = np.asarray(apply(algorithms.grpo().prepare, expert_batch()).adv_bt)
    assert not np.allclose(plain, adv, atol=1e-2)


# ----------------------------------------------------------------------------- equivalences


def _loss_and_grad(objective, batch):
    def loss(lp):
        out, _ = objective.apply(batch.replace(logp_bt=lp), objective.init(), step=jnp.int32(7))
        return total_loss(out)

    return jax.value_and_grad(loss)(batch.logp_bt)


def test_mu_zero_is_the_rl_part():
    alg = algorithms.chord(mu_peak=0.0, mu_valley=0.0)
    batch = prepared(alg)
    policy_only = batch.replace(mask_bt=batch.mask_bt * (SOURCE_B != EXPERT)[:, None])
    # GRPO's clipped surrogate with token_mean over the policy's tokens, no KL
    grpo = algorithms.grpo(kl_coef=0.0, aggregation="token_mean")
    value, grad = _loss_and_grad(alg.objective, batch)
    ref_value, ref_grad = _loss_and_grad(grpo.objective, policy_only)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-8)
    assert np.abs(np.asarray(grad)).max() > 1e-3
    np.testing.assert_array_equal(np.asarray(grad)[SOURCE_B == EXPERT], 0.0)  # expert rows: no RL gradient


def test_rl_part_has_trinitys_dual_clip():
    # Trinity's CHORD runs its PPO loss with clip_ratio_c = 3: a policy token with A < 0 and ρ = e^1.5
    # (4.481689 > 3) costs −A·3, not −A·ρ; expert rows are left to the SFT part
    def rl_loss(**kw):
        alg = algorithms.chord(mu_peak=0.0, mu_valley=0.0, **kw)
        batch = hand_batch([[1, 1], [1, 1]], logp_bt=[[-0.5, -1.5], [-1.0, -1.0]], old_logp_bt=[[-2.0, -2.0], [-1.0, -1.0]],
                           adv_bt=[[-1.0, -1.0], [0.0, 0.0]], source_b=[ON_POLICY, EXPERT])
        return apply(alg.objective, batch)

    out = rl_loss()
    np.testing.assert_allclose(out.losses["pg"], (3.0 + math.exp(0.5)) / 2, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["dual_clip_frac"], 0.5)
    np.testing.assert_allclose(rl_loss(dual_clip=None).losses["pg"], (math.exp(1.5) + math.exp(0.5)) / 2, rtol=1e-6)


def test_mu_one_is_the_sft_part():
    alg = algorithms.chord(mu_peak=1.0, mu_valley=1.0)
    batch = prepared(alg)
    expert_only = batch.replace(mask_bt=batch.mask_bt * (SOURCE_B == EXPERT)[:, None])
    sft = chain(weighted_nll(weighting="phi"), objectives.aggregate("token_mean"))
    value, grad = _loss_and_grad(alg.objective, batch)
    ref_value, ref_grad = _loss_and_grad(sft, expert_only)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(np.asarray(grad)[SOURCE_B != EXPERT], 0.0)
    # by hand: token mean over the expert tokens of −p(1 − p)·log p
    p = np.exp(np.asarray(batch.logp_bt))
    m = np.asarray(expert_only.mask_bt)
    np.testing.assert_allclose(value, (-(p * (1 - p)) * np.log(p) * m).sum() / m.sum(), rtol=1e-5)


def test_mixture_follows_the_step():
    # W = 10, peak .6: at step 7, μ = 7/10 · .6 = .42; L = .58·L_RL + .42·L_SFT
    alg = algorithms.chord(mu_warmup_steps=10, mu_decay_steps=0, mu_peak=0.6, mu_valley=0.6)
    batch = prepared(alg)
    out, _ = alg.objective.apply(batch, alg.objective.init(), step=jnp.int32(7))
    np.testing.assert_allclose(out.metrics["mu"], 0.42, rtol=1e-6)
    rl = apply(algorithms.chord(mu_peak=0.0, mu_valley=0.0).objective, batch)
    sft = apply(algorithms.chord(mu_peak=1.0, mu_valley=1.0).objective, batch)
    np.testing.assert_allclose(out.losses["pg"], 0.58 * rl.losses["pg"], rtol=1e-6)
    np.testing.assert_allclose(out.losses["sft"], 0.42 * sft.losses["sft"], rtol=1e-6)
    assert set(out.losses) == {"pg", "sft"}


def test_objective_contract_and_missing_source():
    alg = algorithms.chord(kl_coef=0.01, entropy_coef=0.001)
    assert alg.needs == {"ref_logp"} and alg.collector is not None
    check_transform_contract(alg.prepare, expert_batch(0), expert_batch(1))
    out = check_transform_contract(alg.objective, prepared(alg, 0), prepared(alg, 1))
    assert set(out.losses) == {"pg", "kl", "entropy", "sft"}
    with pytest.raises(ValueError, match="mix_by_source"):
        apply(alg.objective, prepared(alg).replace(source_b=None))
    with pytest.raises(ValueError, match="expert_per_group"):
        algorithms.chord(expert_per_group=0)
    with pytest.raises(ValueError, match="aggregate"):
        apply(mix_by_source(weighted_nll(), weighted_nll(), mu=lambda s: 0.5), prepared(alg))


def test_chord_prepare_and_update_on_a_tiny_model():
    alg = algorithms.chord(learning_rate=1e-2, mu_peak=0.5, mu_valley=0.5)
    state, metrics, params = train_once(alg, expert_batch())
    assert int(state.step) == 1
    assert {"pg", "sft", "mu", "clip_frac", "loss", "grad_norm"} <= set(metrics)
    for key, value in metrics.items():
        assert np.all(np.isfinite(value)), (key, value)
    np.testing.assert_allclose(metrics["mu"], 0.5)
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)))
    assert moved > 1e-4
    assert_trees_close(metrics["offpolicy/expert_frac"], np.float32(0.25))
