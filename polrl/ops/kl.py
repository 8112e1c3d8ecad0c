"""Per-token estimators of KL(π ‖ π_ref) from the log-probs of sampled tokens.

With x ~ π and d = log π_ref(x) − log π(x) (Schulman 2020, "Approximating KL divergence"):

    k1 = −d              unbiased, high variance, can be negative
    k2 = ½ d²            biased, low variance, ≥ 0
    k3 = eᵈ − d − 1      unbiased (E_π[eᵈ] = 1), low variance, ≥ 0
    abs = |d|            verl's "abs" (a biased, ≥ 0 distance, not an estimator of KL)

and the straight-through variants "k1+", "k2+", "k3+", "abs+" (``KL_ESTIMATORS``): the VALUE of
the named estimator with the GRADIENT of k2, ∇(½ d²) = −d ∇log π. On tokens sampled from π,
E_π[∇k2] = E_π[(log π − log π_ref) ∇log π] = ∇KL(π ‖ π_ref), which k1 (E_π[∇k1] = 0) and k3 do
not give, so "+" keeps the reported/penalized value and corrects the update direction. "k2+" is
"k2". Checked against verl's ``kl_penalty`` (k2 − sg(k2) + sg(value)).
INFERRED: the value is that of the estimator named without the "+" (verl's documentation says so;
its forward function does not strip the suffix).

``logp_bt`` and ``ref_logp_bt`` are the log-probs of the taken tokens under the current and the
reference policy, any equal shapes (usually [B, T]); results are per token, aggregate them with
``polrl.ops.aggregate``.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = jax.Array

# The largest |d| fed to exp in k3 when it is clamped (as verl): eᵈ cannot overflow, and the
# estimate is unchanged for clamp ≤ 19 since |d| ≥ 20 already gives k3 ≥ 19.
_K3_LOG_RATIO_LIMIT = 20.0


def kl_k1(logp_bt: Array, ref_logp_bt: Array) -> Array:
    """k1 = log π − log π_ref."""
    chex.assert_equal_shape([logp_bt, ref_logp_bt])
    return logp_bt - ref_logp_bt


def kl_k2(logp_bt: Array, ref_logp_bt: Array) -> Array:
    """k2 = ½ (log π − log π_ref)²."""
    chex.assert_equal_shape([logp_bt, ref_logp_bt])
    return 0.5 * jnp.square(logp_bt - ref_logp_bt)


def kl_abs(logp_bt: Array, ref_logp_bt: Array) -> Array:
    """|log π − log π_ref| (verl's ``abs``); its gradient wrt log π is sign(log π − log π_ref),
    0 where they are equal (as torch's ``abs``; ``jnp.abs`` would give 1 there)."""
    chex.assert_equal_shape([logp_bt, ref_logp_bt])
    d = logp_bt - ref_logp_bt
    return jax.lax.stop_gradient(jnp.sign(d)) * d


def kl_k3(logp_bt: Array, ref_logp_bt: Array, clamp: float | None = 10.0) -> Array:
    """k3 = eᵈ − d − 1 with d = log π_ref − log π, clipped to [−clamp, clamp].

    verl's ``low_var_kl`` (clamp 10, and d clipped to ±20 before the exp); ``clamp=None`` gives
    the raw estimator. Its gradient wrt log π is 1 − π_ref/π, 0 in the clipped region.
    """
    chex.assert_equal_shape([logp_bt, ref_logp_bt])
    d = ref_logp_bt - logp_bt
    if clamp is None:
        return jnp.exp(d) - d - 1
    d = jnp.clip(d, -_K3_LOG_RATIO_LIMIT, _K3_LOG_RATIO_LIMIT)
    return jnp.clip(jnp.exp(d) - d - 1, -clamp, clamp)


def _k2_gradient(value_fn):
    """``value_fn``'s value with k2's gradient: k2 − sg(k2) + sg(value)."""

    def fn(logp_bt: Array, ref_logp_bt: Array) -> Array:
        k2 = kl_k2(logp_bt, ref_logp_bt)
        return k2 - jax.lax.stop_gradient(k2) + jax.lax.stop_gradient(value_fn(logp_bt, ref_logp_bt))

    fn.__name__ = f"{value_fn.__name__}_plus"
    fn.__doc__ = f"``{value_fn.__name__}``'s value with the gradient of k2 (straight through)."
    return fn


# The names ``kl_estimator=`` accepts everywhere (objectives.kl_penalty, polrl.kl_control).
KL_ESTIMATORS = {
    "k1": kl_k1, "k2": kl_k2, "k3": kl_k3, "abs": kl_abs,
    "k1+": _k2_gradient(kl_k1), "k2+": kl_k2, "k3+": _k2_gradient(kl_k3), "abs+": _k2_gradient(kl_abs),
}
