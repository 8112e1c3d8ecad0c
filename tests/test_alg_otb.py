"""OTB (polrl.algorithms.otb): a per-position group baseline weighted by the prefix's gradient energy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import advantages, algorithms
from polrl.algorithms.otb import optimal_token_baseline_advantage, sum_squared_probs, token_baseline_advantage
from alg_testing import V, apply, assert_trained, assert_trees_close, check_transform_contract, rollout_batch, scored

# two groups: rows 0-2 (lengths 3, 5, 2) and rows 3-4 (lengths 4, 4); row 5 alone
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0],
                 [1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], np.float64)
REWARD = np.array([1.0, 0.0, 0.5, 1.0, 0.0, 1.0])
GROUP = np.array([0, 0, 0, 1, 1, 2])


def _reference(reward, group, mask, logp, sum_sq, zero_tail=False, eps=1e-8):
    """Loop-by-loop float64 transcription of the OTB formula (the test's own reference)."""
    n, t = mask.shape
    w = np.cumsum((1 - 2 * np.exp(logp) + sum_sq) * mask, axis=1)
    adv = np.zeros((n, t))
    for g in set(group.tolist()):
        rows = [i for i in range(n) if group[i] == g]
        if len(rows) == 1:
            continue
        lengths = {i: int(mask[i].sum()) for i in rows}
        ordered = sorted(lengths.values())
        for i in rows:
            for s in range(t):
                num = sum(reward[j] * w[j, s] * mask[j, s] for j in rows)
                den = sum(w[j, s] * mask[j, s] for j in rows) + eps
                base = num / den
                longest = [j for j in rows if lengths[j] == ordered[-1]]
                if zero_tail and longest == [i] and ordered[-1] > ordered[-2] and s >= ordered[-2]:
                    base = 0.0
                adv[i, s] = (reward[i] - base) * mask[i, s]
    return adv


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=MASK.shape + (4,)) * 2.0
    tokens = rng.integers(0, 4, MASK.shape)
    logp = np.take_along_axis(logits - np.log(np.exp(logits).sum(-1, keepdims=True)), tokens[..., None], -1)[..., 0]
    sum_sq = (np.exp(logits) ** 2).sum(-1) / np.exp(logits).sum(-1) ** 2
    return logits, logp, sum_sq


@pytest.mark.parametrize("zero_tail", [False, True])
def test_advantage_matches_the_reference_in_float64(zero_tail):
    logits, logp, sum_sq = _inputs()
    with jax.enable_x64(True):
        np.testing.assert_allclose(sum_squared_probs(jnp.asarray(logits)), sum_sq, rtol=1e-12)
        adv, energy = token_baseline_advantage(jnp.asarray(REWARD), jnp.asarray(GROUP), jnp.asarray(MASK),
                                               jnp.asarray(logp), jnp.asarray(sum_sq), zero_tail=zero_tail)
        np.testing.assert_allclose(adv, _reference(REWARD, GROUP, MASK, logp, sum_sq, zero_tail), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(energy, 1 - 2 * np.exp(logp) + sum_sq, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(adv)[5], 0.0)  # the group of one


def test_zero_tail_by_hand():
    # row 1 (reward set to .25) is its group's only longest row (5 > 3): at t = 3, 4 it runs alone,
    # so B_t = its own reward and A_t ≈ 0; zero_tail sets B_t = 0 there, A_t = .25
    logits, logp, sum_sq = _inputs()
    reward = REWARD.copy()
    reward[1] = 0.25
    with jax.enable_x64(True):
        args = (jnp.asarray(reward), jnp.asarray(GROUP), jnp.asarray(MASK), jnp.asarray(logp), jnp.asarray(sum_sq))
        plain, _ = token_baseline_advantage(*args)
        tail, _ = token_baseline_advantage(*args, zero_tail=True)
    np.testing.assert_allclose(np.asarray(plain)[1, 3:], 0.0, atol=1e-7)  # alone there: B_t = r (to ε)
    np.testing.assert_allclose(np.asarray(tail)[1, 3:], [0.25, 0.25], rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(tail)[[0, 2, 3, 4, 5]], np.asarray(plain)[[0, 2, 3, 4, 5]])


def test_uniform_policy_gives_the_mean_of_the_rows_still_running():
    # uniform logits: w_t = 1 − 2/V + 1/V is the same for every token, so W_t is equal across the
    # rows still valid at t and B_t = their mean reward (Dr.GRPO's baseline when lengths are equal)
    logits = np.zeros(MASK.shape + (4,))
    logp = np.full(MASK.shape, np.log(0.25))
    with jax.enable_x64(True):
        adv, _ = token_baseline_advantage(jnp.asarray(REWARD), jnp.asarray(GROUP), jnp.asarray(MASK),
                                          jnp.asarray(logp), sum_squared_probs(jnp.asarray(logits)))
    adv = np.asarray(adv)
    # group 0 at t = 0, 1 (all three running): mean (1, 0, .5) = .5;  t = 2 (rows 0, 1): .5;  t ≥ 3: row 1 alone
    # (to the ε = 1e-8 of the denominator: |ΔB| ≤ ε / Σ W ≤ 1e-8)
    np.testing.assert_allclose(adv[0, :3], [0.5, 0.5, 0.5], atol=1e-7)
    np.testing.assert_allclose(adv[2, :2], [0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(adv[1], [-0.5, -0.5, -0.5, 0.0, 0.0], atol=1e-7)
    # group 1, equal lengths: the Dr.GRPO advantage r − mean
    batch = rollout_batch().replace(mask_bt=np.ones((8, 4), np.float32))
    drg = apply(advantages.group_advantage(scale="none"), batch).adv_bt
    ours, _ = token_baseline_advantage(batch.reward_b, batch.group_b, batch.mask_bt,
                                       jnp.full((8, 4), jnp.log(0.25)), jnp.full((8, 4), 0.25))
    np.testing.assert_allclose(ours, drg, rtol=1e-5, atol=1e-6)


def _with_logits(batch, seed=0):
    logits = np.random.default_rng(seed).normal(size=batch.mask_bt.shape + (V,)).astype(np.float32)
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(batch.response_bt)[..., None], -1)[..., 0]
    return batch.replace(logits_btv=jnp.asarray(logits), logp_bt=logp, old_logp_bt=None)


def test_transform_reads_the_scoring_logits():
    batch = _with_logits(rollout_batch())
    out = apply(optimal_token_baseline_advantage(), batch.replace(adv_bt=None))
    ref = _reference(np.asarray(batch.reward_b, np.float64), np.asarray(batch.group_b), np.asarray(batch.mask_bt, np.float64),
                     np.asarray(batch.logp_bt, np.float64), np.asarray(sum_squared_probs(batch.logits_btv), np.float64))
    np.testing.assert_allclose(out.adv_bt, ref, rtol=1e-4, atol=1e-5)  # float32 inputs: error ≲ 1e-6·|G|
    assert {"otb_energy_mean", "otb_adv_abs_mean"} <= set(out.metrics)
    # the advantage carries no gradient
    g = jax.grad(lambda z: apply(optimal_token_baseline_advantage(), batch.replace(logits_btv=z)).adv_bt.sum())(batch.logits_btv)
    np.testing.assert_array_equal(g, 0.0)
    with pytest.raises(ValueError, match="logits"):
        apply(optimal_token_baseline_advantage(), batch.replace(logits_btv=None))


def test_noun_and_train_step():
    alg = algorithms.otb()
    assert alg.needs == {"logits"}
    with pytest.raises(TypeError, match="correction"):
        algorithms.otb(correction="token_truncate")
    check_transform_contract(optimal_token_baseline_advantage(zero_tail=True), _with_logits(rollout_batch(seed=0), 0),
                             _with_logits(rollout_batch(seed=1), 1))
    batch = _with_logits(scored(apply(alg.prepare, rollout_batch())))
    assert_trees_close(jax.jit(lambda b: apply(alg.objective, b))(batch), apply(alg.objective, batch), rtol=1e-5, atol=1e-6)
    assert_trained(algorithms.otb(learning_rate=1e-2), ["pg", "otb_energy_mean", "clip_frac"])
