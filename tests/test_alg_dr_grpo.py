"""Dr.GRPO (polrl.algorithms.dr_grpo): no-std advantage, constant-normalizer aggregation."""
import jax
import numpy as np
import pytest

from polrl import algorithms
from polrl.core import total_loss
from alg_testing import apply, assert_trained, check_algorithm_transforms, hand_batch

# group 0 = rows 0, 1 (rewards 1, 0), group 1 = rows 2, 3 (rewards 0, 1); lengths 3, 1, 2, 3
MASK = [[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1]]
BATCH = dict(reward_b=[1.0, 0.0, 0.0, 1.0], group_b=[0, 0, 1, 1], logp_bt=np.full((4, 3), -1.0))


def _loss(alg):
    prepared = apply(alg.prepare, hand_batch(MASK, **BATCH))
    return apply(alg.objective, prepared)


def test_advantage_and_constant_normalizer_by_hand():
    out = _loss(algorithms.dr_grpo(max_len=4))
    # A = r − mean_g r = [0.5, −0.5, −0.5, 0.5]; on-policy ρ = 1, so L_t = −A_t
    # per-sequence token sums [−1.5, 0.5, 1.0, −1.5]; mean over 4 sequences −0.375; / T_max 4
    np.testing.assert_allclose(out.losses["pg"], -0.09375, rtol=1e-6)
    assert set(out.losses) == {"pg"}  # β = 0: no KL term, no reference
    # GRPO on the same batch: A = ±0.5/std = ±0.707107 and per-sequence token MEANS cancel: 0.
    # The length-normalised loss ignores that the correct row 0 is longer than the wrong row 1.
    grpo = _loss(algorithms.grpo(kl_coef=0.0))
    np.testing.assert_allclose(grpo.losses["pg"], 0.0, atol=1e-6)


def test_gradient_is_length_weighted_reinforce():
    alg = algorithms.dr_grpo(max_len=4)
    prepared = apply(alg.prepare, hand_batch(MASK, **BATCH))
    grad = jax.grad(lambda lp: total_loss(apply(alg.objective, prepared.replace(logp_bt=lp))))(prepared.logp_bt)
    # ∂L/∂log π_t = −A_i / (G·T_max) = −A_i / 16 on every valid token, whatever the row's length
    a = np.array([0.5, -0.5, -0.5, 0.5])[:, None]
    np.testing.assert_allclose(grad, -a / 16 * np.array(MASK), rtol=1e-6)


def test_max_len_is_required():
    with pytest.raises(ValueError, match="max_len"):
        algorithms.dr_grpo()
    algorithms.dr_grpo(aggregation="token_mean")  # other aggregations do not need it


def test_shared_keywords():
    alg = algorithms.dr_grpo(max_len=4, kl_coef=0.1, kl_target=2.0)
    assert alg.needs == {"ref_logp"}  # adaptive KL in the loss
    alg = algorithms.dr_grpo(max_len=4, kl_coef=0.1, kl_in="reward", correction="token_truncate")
    assert alg.needs == {"ref_logp", "old_logp"}
    with pytest.raises(ValueError, match="kl_in"):
        algorithms.dr_grpo(max_len=4, kl_in="value")


def test_transforms_contract_and_train_step():
    check_algorithm_transforms(algorithms.dr_grpo(max_len=4, kl_coef=0.05, kl_target=1.0))
    metrics = assert_trained(algorithms.dr_grpo(max_len=4, learning_rate=1e-2), ["pg", "clip_frac"])
    np.testing.assert_allclose(metrics["ratio_mean"], 1.0, atol=1e-6)  # one update: π_old = π_θ
