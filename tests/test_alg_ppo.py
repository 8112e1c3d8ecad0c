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
