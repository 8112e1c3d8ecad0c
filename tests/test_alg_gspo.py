"""GSPO (polrl.algorithms.gspo): the sequence-level importance ratio, and GSPO-token."""
import jax
import numpy as np
import pytest

from polrl import advantages, algorithms, objectives
from polrl.algorithms.gspo import sequence_clipped_policy_gradient
from polrl.core import chain, total_loss
from alg_testing import (
    apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch, scored,
)

MASK = [[1, 1, 1], [1, 1, 0]]
OLD = np.array([[-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]])
# log-ratios: row 0 [0.3, 0, 0] → mean 0.1, s = e^0.1 = 1.105171; row 1 [−0.2, 0] → mean −0.1, s = 0.904837
LOGP = OLD + np.array([[0.3, 0.0, 0.0], [-0.2, 0.0, 9.0]])  # 9 on padding must not count
ADV = [[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]]


def _batch():
    return hand_batch(MASK, logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV)


def test_sequence_ratio_by_hand():
    out = apply(sequence_clipped_policy_gradient(eps_low=0.2, eps_high=0.2), _batch())
    # inside the clip: L = −A·s on every token of the row
    np.testing.assert_allclose(np.asarray(out.terms["pg"])[0], [-1.105171] * 3, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.terms["pg"])[1, :2], [0.904837] * 2, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["clip_frac"], 0.0)
    np.testing.assert_allclose(out.metrics["seq_ratio_mean"], 1.005004, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["seq_ratio_max"], 1.105171, rtol=1e-5)
    # ε = 0.05: row 0 (A > 0, s > 1.05) → −1.05;  row 1 (A < 0, s < 0.95) → max(0.904837, 0.95) = 0.95
    out = apply(sequence_clipped_policy_gradient(eps_low=0.05, eps_high=0.05), _batch())
    np.testing.assert_allclose(np.asarray(out.terms["pg"])[:, :2], [[-1.05, -1.05], [0.95, 0.95]], rtol=1e-6)
    np.testing.assert_allclose(out.metrics["clip_frac"], 1.0)
    # the noun's seq_mean_token_mean is the mean over sequences: (−1.105171 + 0.904837)/2
    noun = algorithms.gspo(eps_low=0.2, eps_high=0.2)
    np.testing.assert_allclose(apply(noun.objective, _batch()).losses["pg"], -0.100167, rtol=1e-4)


def test_default_clip_range_is_tiny():
    # ε = 3e-4 / 4e-4 on the geometric-mean ratio: e^0.1 is far outside, so both rows are clipped
    out = apply(algorithms.gspo().objective, _batch())
    np.testing.assert_allclose(out.metrics["clip_frac"], 1.0)
    np.testing.assert_allclose(out.losses["pg"], (-(1 + 4e-4) + (1 - 3e-4)) / 2, atol=1e-7)  # −0.00035


def _loss_and_grad(token_level, batch, aggregation, eps):
    objective = chain(
        sequence_clipped_policy_gradient(eps_low=eps, eps_high=eps, token_level=token_level),
        objectives.aggregate(aggregation),
    )
    loss = lambda lp: total_loss(apply(objective, batch.replace(logp_bt=lp)))
    return loss(batch.logp_bt), jax.grad(loss)(batch.logp_bt)


@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "token_mean", "seq_mean_token_sum"])
@pytest.mark.parametrize("eps", [0.5, 0.02])  # clip inactive / active on some rows
def test_gspo_token_equals_sequence_gspo_for_sequence_advantages(aggregation, eps):
    batch = apply(advantages.group_advantage(), scored(rollout_batch()))
    batch = batch.replace(logp_bt=batch.old_logp_bt + 0.1 * np.random.default_rng(3).normal(size=batch.mask_bt.shape))
    seq_loss, seq_grad = _loss_and_grad(False, batch, aggregation, eps)
    tok_loss, tok_grad = _loss_and_grad(True, batch, aggregation, eps)
    np.testing.assert_allclose(tok_loss, seq_loss, rtol=1e-5)
    np.testing.assert_allclose(tok_grad, seq_grad, rtol=1e-5, atol=1e-7)
    assert np.abs(np.asarray(seq_grad)).max() > 1e-3
    # per-token advantages break the equivalence of the gradients (not of the values)
    varied = batch.replace(adv_bt=batch.adv_bt * np.linspace(0.5, 1.5, batch.mask_bt.shape[1]))
    v_seq_loss, v_seq_grad = _loss_and_grad(False, varied, aggregation, eps)
    v_tok_loss, v_tok_grad = _loss_and_grad(True, varied, aggregation, eps)
    np.testing.assert_allclose(v_tok_loss, v_seq_loss, rtol=1e-5)
    assert not np.allclose(v_tok_grad, v_seq_grad, atol=1e-5)


def test_contract_and_train_step():
    def make(seed):
        b = scored(rollout_batch(seed=seed), seed=seed)
        return b.replace(adv_bt=b.mask_bt * (1.0 - seed))

    for token_level in (False, True):
        check_transform_contract(sequence_clipped_policy_gradient(token_level=token_level), make(0), make(1))
    check_algorithm_transforms(algorithms.gspo(token_level=True, kl_coef=0.05))
    metrics = assert_trained(algorithms.gspo(learning_rate=1e-2, num_minibatches=2), ["pg", "clip_frac", "seq_ratio_mean"])
    assert metrics["seq_ratio_max"] > 1.0 + 4e-4  # the second minibatch sees moved parameters and clips
