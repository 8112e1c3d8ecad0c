"""Every polrl.ops kernel gives the same result under jax.jit as eagerly."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import ops

_RNG = np.random.default_rng(0)
B, T, V, D = 3, 5, 7, 4


def _f32(*shape):
    return jnp.asarray(_RNG.normal(size=shape), jnp.float32)


MASK_BT = jnp.asarray(np.arange(T)[None] < np.array([[5], [2], [0]]), jnp.float32)
REWARD_B = jnp.array([1.0, 0.0, 1.0])
GROUP_B = jnp.array([0, 0, 1], jnp.int32)
LOGP_BT = -jnp.abs(_f32(B, T))
REF_BT = -jnp.abs(_f32(B, T))
TOKENS_BT = jnp.asarray(_RNG.integers(0, V, size=(B, T)), jnp.int32)
W_DV = _f32(D, V)

CASES = {
    "gae": (functools.partial(ops.gae, lambda_=0.9), (_f32(T), jnp.full(T, 0.99), _f32(T + 1))),
    "gae_bt": (
        functools.partial(ops.gae_bt, gamma=0.99, lambda_=0.95),
        (_f32(B, T), _f32(B, T), MASK_BT),
    ),
    "discounted_returns": (ops.discounted_returns, (_f32(T), jnp.full(T, 0.9), jnp.array(2.0))),
    "group_advantages": (
        functools.partial(ops.group_advantages, num_groups=2),
        (REWARD_B, GROUP_B),
    ),
    "group_advantages_none": (
        functools.partial(ops.group_advantages, num_groups=2, scale="none"),
        (REWARD_B, GROUP_B),
    ),
    "group_stats": (functools.partial(ops.group_stats, num_groups=2), (REWARD_B, GROUP_B)),
    "leave_one_out_baseline": (
        functools.partial(ops.leave_one_out_baseline, num_groups=2),
        (REWARD_B, GROUP_B),
    ),
    "zero_variance_groups": (
        functools.partial(ops.zero_variance_groups, num_groups=2),
        (REWARD_B, GROUP_B),
    ),
    "kl_k1": (ops.kl_k1, (LOGP_BT, REF_BT)),
    "kl_k2": (ops.kl_k2, (LOGP_BT, REF_BT)),
    "kl_k3": (ops.kl_k3, (LOGP_BT, REF_BT)),
    "kl_abs": (ops.kl_abs, (LOGP_BT, REF_BT)),
    "log_ratio": (ops.log_ratio, (LOGP_BT, REF_BT)),
    "clipped_surrogate": (
        functools.partial(ops.clipped_surrogate, eps_high=0.28, dual_clip=3.0),
        (jnp.exp(_f32(B, T)), _f32(B, T)),
    ),
    "log_softmax_at": (ops.log_softmax_at, (_f32(B, T, V), TOKENS_BT, 0.7)),
    "entropy_from_logits": (ops.entropy_from_logits, (_f32(B, T, V), 0.7)),
    "mean_log_prob_from_logits": (ops.mean_log_prob_from_logits, (_f32(B, T, V), 0.7)),
    "token_logp_and_entropy": (
        lambda h, tok: ops.token_logp_and_entropy(h, lambda x: x @ W_DV, tok, chunk_size=2),
        (_f32(B, T, D), TOKENS_BT),
    ),
    "min_p_log_prob": (
        functools.partial(ops.min_p_log_prob, threshold=0.3), (_f32(B, T, V), TOKENS_BT),
    ),
    "masked_sum": (ops.masked_sum, (_f32(B, T), MASK_BT)),
    "edit_distance": (ops.edit_distance, (TOKENS_BT[0], jnp.int32(4), TOKENS_BT[1], jnp.int32(5))),
    "pairwise_edit_distance": (ops.pairwise_edit_distance, (TOKENS_BT, jnp.array([5, 2, 0], jnp.int32))),
    "masked_mean": (functools.partial(ops.masked_mean, axis=1), (_f32(B, T), MASK_BT)),
    "masked_var": (ops.masked_var, (_f32(B, T), MASK_BT)),
    "masked_whiten": (ops.masked_whiten, (_f32(B, T), MASK_BT)),
    "masked_max": (ops.masked_max, (_f32(B, T), MASK_BT)),
    "masked_min": (functools.partial(ops.masked_min, axis=1), (_f32(B, T), MASK_BT)),
    "safe_div": (ops.safe_div, (_f32(B), jnp.array([1.0, 0.0, 2.0]))),
    **{
        f"aggregate_{mode}": (
            functools.partial(ops.aggregate, mode=mode, max_len=T),
            (_f32(B, T), MASK_BT),
        )
        for mode in ops.AGGREGATION_MODES
    },
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_jit_matches_eager(name):
    fn, args = CASES[name]
    eager, jitted = fn(*args), jax.jit(fn)(*args)
    for e, j in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(j, e, rtol=1e-5, atol=1e-6)


def test_every_public_kernel_is_covered():
    kernels = {n for n in ops.__all__ if callable(getattr(ops, n))}
    covered = {n for n in CASES if n in kernels} | {"aggregate"}
    assert kernels == covered
