"""PPO (polrl.algorithms.ppo): the dual clip by hand through the noun, and the KL-in-reward
placement (PPO-RLHF) through GAE."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from polrl import algorithms, ops
from alg_testing import apply, hand_batch

# A = −1 on both tokens; ρ = e^1.5 = 4.481689 (beyond the dual clip c = 3) and e^0.5 = 1.648721
OLD = [[-2.0, -2.0]]
LOGP = [[-0.5, -1.5]]
ADV = [[-1.0, -1.0]]
VALUES = dict(value_bt=[[0.0, 0.0]], old_value_bt=[[0.0, 0.0]], return_bt=[[0.0, 0.0]])


def _pg(logp):
    alg = algorithms.ppo()  # default dual clip c = 3, ε = 0.2, token_mean
    return apply(alg.objective, hand_batch([[1, 1]], logp_bt=logp, old_logp_bt=OLD, adv_bt=ADV, **VALUES))


def test_default_dual_clip_by_hand():
    out = _pg(np.asarray(LOGP, np.float32))
    # token 0: max(4.481689, clip → 1.2) = 4.481689, then min(·, −c·A = 3) = 3   (dual-clipped)
    # token 1: max(1.648721, 1.2) = 1.648721 < 3                                 (not)
    # token mean (3 + 1.648721)/2
    np.testing.assert_allclose(out.losses["pg"], (3.0 + math.exp(0.5)) / 2, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["dual_clip_frac"], 0.5)
    np.testing.assert_allclose(out.metrics["clip_frac"], 0.0)  # A < 0 and ρ > 1: the ε-clip is not the max
    # the dual-clipped token has no gradient; the other has −A·ρ/2 = 1.648721/2 (token mean of 2)
    grad = jax.grad(lambda lp: _pg(lp).losses["pg"])(jnp.asarray(LOGP, jnp.float32))
    np.testing.assert_allclose(grad, [[0.0, math.exp(0.5) / 2]], rtol=1e-6)
    # without the dual clip the first token's loss is unbounded: (4.481689 + 1.648721)/2
    plain = apply(algorithms.ppo(dual_clip=None).objective,
                  hand_batch([[1, 1]], logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV, **VALUES))
    np.testing.assert_allclose(plain.losses["pg"], (math.exp(1.5) + math.exp(0.5)) / 2, rtol=1e-6)


def test_kl_in_reward_goes_through_gae_before_whitening():
    gamma, lam, beta = 1.0, 0.95, 0.2
    mask = [[1, 1, 1], [1, 1, 0]]
    old = np.array([[-1.0, -1.0, -1.0], [-2.0, -2.0, 0.0]])
    ref = np.array([[-1.5, -1.0, -0.5], [-2.0, -3.0, 7.0]])
    value = np.array([[0.5, 0.2, 0.1], [0.3, 0.4, 9.9]])
    alg = algorithms.ppo(kl_coef=beta, kl_in="reward", kl_estimator="k1", gamma=gamma, lambda_=lam)
    assert alg.needs == {"values", "ref_logp", "old_logp"}
    batch = hand_batch(mask, reward_b=[1.0, 2.0], old_value_bt=value, old_logp_bt=old, ref_logp_bt=ref)
    out = apply(alg.prepare, batch)
    # token rewards: R on the last valid token − β·k1_t; GAE; then whitening of A over valid tokens
    m = np.array(mask, np.float32)
    r = -beta * (old - ref) * m
    r[0, 2] += 1.0
    r[1, 1] += 2.0
    adv = np.asarray(ops.gae_bt(jnp.asarray(r, jnp.float32), jnp.asarray(value * m, jnp.float32), m, gamma=gamma, lambda_=lam))
    valid = adv[m > 0]
    whitened = (valid - valid.mean()) / np.sqrt(valid.var(ddof=1) + 1e-8)
    np.testing.assert_allclose(np.asarray(out.adv_bt)[m > 0], whitened, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.return_bt)[m > 0], (adv + value)[m > 0], rtol=1e-5)
    assert "kl" not in apply(alg.objective, out.replace(
        logp_bt=old, value_bt=value, entropy_bt=np.zeros((2, 3)))).losses


# ----------------------------------------------------------------------------- sequence masking

# rows: 0 A = −1, mean log π_old − log π = .2 > δ;  1 A = −1, mean .05;  2 A = +1, mean .3;
#       3 A = −1 on two tokens, +1 on one, mean .15 > δ
SEQ_MASK = [[1, 1], [1, 1], [1, 1], [1, 1]]
SEQ_D = np.array([[0.1, 0.3], [0.0, 0.1], [0.3, 0.3], [0.2, 0.1]])  # log π_old − log π
SEQ_ADV = np.array([[-1.0, -1.0], [-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
SEQ_LOGP = np.full((4, 2), -1.0)


def _seq_batch():
    return hand_batch(SEQ_MASK, logp_bt=SEQ_LOGP, old_logp_bt=SEQ_LOGP + SEQ_D, adv_bt=SEQ_ADV)


def test_sequence_mask_by_hand():
    from polrl import objectives

    plain = objectives.clipped_policy_gradient(eps_low=0.5)
    masked = objectives.clipped_policy_gradient(eps_low=0.5, seq_mask_delta=0.1)
    out, ref = apply(masked, _seq_batch()), apply(plain, _seq_batch())
    # masked tokens: row 0 (both, A < 0) and row 3 token 0 (A < 0); row 3 token 1 has A > 0
    keep = np.array([[0, 0], [1, 1], [1, 1], [0, 1]], np.float32)
    np.testing.assert_allclose(out.terms["pg"], np.asarray(ref.terms["pg"]) * keep, rtol=1e-6)
    # inside the clip range ρ = e^−D: unmasked loss −A·ρ
    np.testing.assert_allclose(np.asarray(out.terms["pg"])[1], np.exp(-SEQ_D[1]), rtol=1e-6)
    np.testing.assert_allclose(out.metrics["seq_mask_frac"], 3 / 8)
    np.testing.assert_allclose(out.metrics["seq_kl_mean"], (0.2 + 0.05 + 0.3 + 0.15) / 4, rtol=1e-5)
    grad = jax.grad(lambda lp: apply(masked, _seq_batch().replace(logp_bt=lp)).terms["pg"].sum())(_seq_batch().logp_bt)
    np.testing.assert_array_equal(np.asarray(grad)[keep == 0], 0.0)
    assert np.all(np.asarray(grad)[keep == 1] != 0)
    # δ = .25: only row 2 exceeds it, and its advantage is positive → nothing masked
    out = apply(objectives.clipped_policy_gradient(eps_low=0.5, seq_mask_delta=0.25), _seq_batch())
    np.testing.assert_array_equal(out.terms["pg"], ref.terms["pg"])
    assert "seq_mask_frac" not in ref.metrics


def test_sequence_mask_is_inactive_on_policy_and_reaches_the_nouns():
    import pytest

    from polrl import objectives

    on = hand_batch(SEQ_MASK, logp_bt=SEQ_LOGP, adv_bt=SEQ_ADV)  # π_old = sg(π_θ): D = 0 ≤ δ
    out = apply(objectives.clipped_policy_gradient(seq_mask_delta=0.0), on)
    np.testing.assert_allclose(out.metrics["seq_mask_frac"], 0.0)
    np.testing.assert_allclose(out.terms["pg"], -SEQ_ADV, rtol=1e-6)
    for noun in (algorithms.grpo, algorithms.ppo):
        alg = noun(seq_mask_delta=0.1, kl_coef=0.0)
        res = apply(alg.objective, _seq_batch().replace(**{k: np.zeros((4, 2), np.float32) for k in VALUES}))
        np.testing.assert_allclose(res.metrics["seq_mask_frac"], 3 / 8)
    with pytest.raises(ValueError, match="seq_mask_delta"):
        algorithms.grpo(seq_mask_delta=-0.1)
