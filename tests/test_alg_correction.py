"""polrl.correction: train/inference importance-sampling correction (TIS / MIS)."""
import numpy as np
import pytest

from polrl import correction
from polrl.core import EXPERT, ON_POLICY
from alg_testing import apply, check_transform_contract, hand_batch, rollout_batch, scored

# Two rows, the second has one padding token (its junk log-prob 5 must never count).
MASK = [[1, 1, 1], [1, 1, 0]]
BEHAVIOR = [[-1.0, -1.0, -1.0], [-2.0, -2.0, 0.0]]
OLD = [[-0.5, -1.0, -2.0], [-2.0, -0.9, 5.0]]
ADV = [[1.0, 2.0, 3.0], [-1.0, -2.0, 0.0]]
# log ρ = old − behavior: row 0 [0.5, 0, −1], row 1 [0, 1.1]
# token ρ: row 0 [e^0.5, 1, e^−1] = [1.648721, 1, 0.367879]; row 1 [1, e^1.1] = [1, 3.004166]
# sequence ρ (product): row 0 e^−0.5 = 0.606531; row 1 e^1.1 = 3.004166
# geometric ρ: row 0 e^(−0.5/3) = 0.846482; row 1 e^(1.1/2) = 1.733253


def _batch(**kw):
    fields = dict(behavior_logp_bt=BEHAVIOR, old_logp_bt=OLD, adv_bt=ADV)
    fields.update(kw)
    return hand_batch(MASK, **fields)


def test_token_truncate():
    t = correction.rollout_correction(level="token", mode="truncate", threshold=2.0)
    assert t.needs == {"old_logp"}
    out = apply(t, _batch())
    # A · min(ρ, 2): row 0 [1·1.648721, 2·1, 3·0.367879]; row 1 [−1·1, −2·2]
    np.testing.assert_allclose(np.asarray(out.adv_bt)[0], [1.648721, 2.0, 1.103638], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.adv_bt)[1, :2], [-1.0, -4.0], rtol=1e-5)
    np.testing.assert_array_equal(out.mask_bt, MASK)  # truncation never drops tokens
    # one of 5 valid tokens has ρ > 2; mean ρ = (1.648721 + 1 + 0.367879 + 1 + 3.004166)/5
    np.testing.assert_allclose(out.metrics["correction/truncated_frac"], 0.2)
    np.testing.assert_allclose(out.metrics["correction/ratio_mean"], 1.404153, rtol=1e-5)


def test_sequence_truncate_uses_the_product_of_token_ratios():
    out = apply(correction.rollout_correction(level="sequence", mode="truncate", threshold=2.0), _batch())
    # row 0 weight e^−0.5 = 0.606531 on every token; row 1 min(3.004166, 2) = 2
    np.testing.assert_allclose(np.asarray(out.adv_bt)[0], [0.606531, 1.213061, 1.819592], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.adv_bt)[1, :2], [-2.0, -4.0], rtol=1e-5)
    np.testing.assert_allclose(out.metrics["correction/truncated_frac"], 0.4)  # row 1's 2 tokens of 5


def test_token_mask():
    out = apply(correction.rollout_correction(level="token", mode="mask", threshold=2.0), _batch())
    # keep 1/2 ≤ ρ ≤ 2: row 0 drops e^−1 = 0.37; row 1 drops 3.0
    np.testing.assert_array_equal(out.mask_bt, [[1, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(out.adv_bt, ADV)  # masking leaves the advantage alone
    np.testing.assert_allclose(out.metrics["correction/masked_frac"], 0.4)


def test_sequence_and_geometric_mask():
    out = apply(correction.rollout_correction(level="sequence", mode="mask", threshold=2.0), _batch())
    # row 0: 0.61 ∈ [0.5, 2] kept; row 1: 3.0 dropped whole
    np.testing.assert_array_equal(out.mask_bt, [[1, 1, 1], [0, 0, 0]])
    # geometric means 0.85 and 1.73 are both inside [0.5, 2] …
    out = apply(correction.rollout_correction(level="geometric", mode="mask", threshold=2.0), _batch())
    np.testing.assert_array_equal(out.mask_bt, MASK)
    np.testing.assert_allclose(out.metrics["correction/masked_frac"], 0.0)
    # … and with C = 1.5 (C_low = 2/3) row 1's 1.73 is out
    out = apply(correction.rollout_correction(level="geometric", mode="mask", threshold=1.5), _batch())
    np.testing.assert_array_equal(out.mask_bt, [[1, 1, 1], [0, 0, 0]])
    np.testing.assert_allclose(out.metrics["correction/ratio_mean"], (3 * 0.846482 + 2 * 1.733253) / 5, rtol=1e-5)
    # an explicit lower threshold: 0.9 drops row 0 (0.85) instead
    out = apply(correction.rollout_correction(level="geometric", mode="mask", threshold=2.0, threshold_low=0.9), _batch())
    np.testing.assert_array_equal(out.mask_bt, [[0, 0, 0], [1, 1, 0]])


def test_expert_rows_are_left_alone():
    batch = _batch(source_b=[ON_POLICY, EXPERT])
    out = apply(correction.rollout_correction(level="token", mode="truncate", threshold=2.0), batch)
    np.testing.assert_allclose(np.asarray(out.adv_bt)[1], ADV[1])  # weight 1 on the expert row
    np.testing.assert_allclose(out.metrics["correction/truncated_frac"], 0.0)
    np.testing.assert_allclose(out.metrics["correction/ratio_mean"], (1.648721 + 1 + 0.367879) / 3, rtol=1e-5)
    out = apply(correction.rollout_correction(level="sequence", mode="mask", threshold=2.0), batch)
    np.testing.assert_array_equal(out.mask_bt, MASK)  # the expert row is never rejected


@pytest.mark.parametrize("name", sorted(correction.NAMED))
def test_on_policy_batches_make_every_correction_the_identity(name):
    # behavior == old (the sampler and the trainer agree): ρ = 1 at every level
    batch = _batch(old_logp_bt=BEHAVIOR)
    [t] = correction.named_correction(name, threshold=1.2)
    out = apply(t, batch)
    np.testing.assert_array_equal(out.adv_bt, batch.adv_bt)
    np.testing.assert_array_equal(out.mask_bt, batch.mask_bt)
    np.testing.assert_allclose(out.metrics["correction/ratio_mean"], 1.0)


def test_named_correction_and_bad_arguments():
    assert correction.named_correction(None) == []
    [t] = correction.named_correction("geometric_mask", threshold=3.0)
    out = apply(t, _batch())
    np.testing.assert_array_equal(out.mask_bt, MASK)  # 0.85, 1.73 ∈ [1/3, 3]
    with pytest.raises(ValueError, match="token_truncate"):
        correction.named_correction("tis")
    with pytest.raises(ValueError, match="threshold"):
        correction.rollout_correction(threshold=1.0)
    with pytest.raises(ValueError, match="threshold_low"):
        correction.rollout_correction(threshold=2.0, threshold_low=1.5)
    with pytest.raises(ValueError, match="level"):
        correction.rollout_correction(level="row")
    with pytest.raises(ValueError, match="mode"):
        correction.rollout_correction(mode="clip")
    with pytest.raises(ValueError, match="rollout_correction"):
        apply(correction.rollout_correction(), hand_batch(MASK, behavior_logp_bt=BEHAVIOR, adv_bt=ADV))


@pytest.mark.parametrize("name", sorted(correction.NAMED))
def test_contract(name):
    [t] = correction.named_correction(name)
    make = lambda seed: scored(rollout_batch(seed=seed), seed=seed).replace(adv_bt=rollout_batch(seed=seed).mask_bt * (seed + 1.0))
    check_transform_contract(t, make(0), make(1))
