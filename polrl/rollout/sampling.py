"""How one token is drawn from the policy's next-token logits (shared by every rollout program).

Token i of a response is drawn from π_T(· | context) with
    log π_T = log_softmax(logits / T)                       (T = temperature; T = 0 → argmax)
restricted, in this order and each optionally, to the top-k logits (top_k > 0), to the smallest
set of tokens whose probability mass reaches top_p (top_p < 1), and to the tokens whose
probability is at least min_p times the most likely one's (min_p > 0; "Turning Up the Heat:
Min-p Sampling for Creative and Coherent LLM Outputs", arXiv 2407.01082). The recorded log-prob
is always the log-prob under the untruncated log_softmax(logits / T) (T = 1 when greedy), i.e.
exactly what the training forward computes.

Sampling draws one uniform per row and step (all randomness is drawn before a decode loop, so
the loop body holds no RNG) and needs no length-V cumsum or Gumbel noise (two-level inverse CDF).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Static sampling options (part of the compiled function).

    ``max_new_tokens`` is the width of a generation's output (and its budget unless a per-row
    budget is smaller); ``eos_id`` ends a row (an id outside [0, vocab) never does);
    ``eos_check_every`` tests "every row finished?" only every that many steps.
    """

    max_new_tokens: int
    eos_id: int
    pad_id: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    eos_check_every: int = 1

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise ValueError(f"SamplingConfig.max_new_tokens must be > 0, got "
                             f"{self.max_new_tokens}.")
        if self.temperature < 0:
            raise ValueError(f"SamplingConfig.temperature must be >= 0 (0 = greedy), got "
                             f"{self.temperature}.")
        if self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k must be >= 0 (0 = off), got {self.top_k}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1] (1 = off), got {self.top_p}.")
        if not 0.0 <= self.min_p < 1.0:
            raise ValueError(f"SamplingConfig.min_p must be in [0, 1) (0 = off), got {self.min_p}.")
        if self.eos_check_every <= 0:
            raise ValueError(f"SamplingConfig.eos_check_every must be >= 1, got "
                             f"{self.eos_check_every}.")

    @property
    def scoring_temperature(self) -> float:
        """The temperature log-probs are scored at: the sampler's (1 for greedy sampling)."""
        return self.temperature if self.temperature > 0 else 1.0


def keep_mask(scaled_bv: jax.Array, top_k: int, top_p: float) -> jax.Array:
    """Tokens that survive top-k, then the top-p nucleus (both optional).

    Nucleus: sort descending, keep token j iff the mass strictly before it is < top_p
    (so the token that crosses top_p is kept, and so is the top token always).
    """
    if top_k > 0:
        top_bk = jax.lax.top_k(scaled_bv, min(top_k, scaled_bv.shape[-1]))[0]
    else:
        top_bk = -jnp.sort(-scaled_bv, axis=-1)
    if top_p < 1.0:
        probs_bk = jax.nn.softmax(top_bk, axis=-1)
        mass_before_bk = jnp.cumsum(probs_bk, axis=-1) - probs_bk
        top_bk = jnp.where(mass_before_bk < top_p, top_bk, jnp.inf)
    return scaled_bv >= jnp.min(top_bk, axis=-1, keepdims=True)


def inverse_cdf(weight_bv: jax.Array, u_b: jax.Array) -> jax.Array:
    """First j with C_j ≥ u·C_V, C = cumsum(w), for w ≥ 0 and u ∈ (0, 1]: P(j) = w_j / Σw.

    Two levels so no length-V cumsum is needed (XLA's is slow on CPU): split the vocab
    into blocks of c ≈ √V, pick block J by inverse CDF over the block masses, then the
    token inside J by inverse CDF with the leftover fraction of J's mass. Each level
    counts entries strictly below a target in (0, total], so it never picks a zero weight.
    """
    b, v = weight_bv.shape
    c = 1 << math.ceil(math.log2(v) / 2)
    nb = -(-v // c)
    w_bnc = jnp.pad(weight_bv, ((0, 0), (0, nb * c - v))).reshape(b, nb, c)
    mass_bn = jnp.sum(w_bnc, axis=-1)
    cdf_bn = jnp.cumsum(mass_bn, axis=-1)
    target_b = u_b * cdf_bn[:, -1]
    block_b = jnp.sum(cdf_bn < target_b[:, None], axis=-1)
    mass_b = jnp.take_along_axis(mass_bn, block_b[:, None], axis=-1)[:, 0]
    before_b = jnp.take_along_axis(cdf_bn, block_b[:, None], axis=-1)[:, 0] - mass_b
    frac_b = jnp.clip((target_b - before_b) / mass_b, jnp.finfo(jnp.float32).tiny, 1.0)
    inner_bc = jnp.take_along_axis(w_bnc, block_b[:, None, None], axis=1)[:, 0]
    inner_cdf_bc = jnp.cumsum(inner_bc, axis=-1)
    inner_b = jnp.sum(inner_cdf_bc < (frac_b * inner_cdf_bc[:, -1])[:, None], axis=-1)
    return (block_b * c + inner_b).astype(jnp.int32)


def draw(logits_bv: jax.Array, uniform_b: jax.Array, config: SamplingConfig):
    """One token per row and its log-prob under the untruncated tempered softmax.

    With x = logits / T and w = exp(x − max x) on the kept tokens (0 elsewhere; min-p keeps
    w ≥ min_p, since max w = 1), the token is drawn by inverse CDF from w with
    u = 1 − uniform_b ∈ (0, 1] (uniform_b ∈ [0, 1)); log p = x_tok − logsumexp(x).
    """
    assert uniform_b.shape == logits_bv.shape[:1], (uniform_b.shape, logits_bv.shape)
    scaled_bv = logits_bv if config.temperature == 0.0 else logits_bv / config.temperature
    max_b1 = jnp.max(scaled_bv, axis=-1, keepdims=True)
    weight_bv = jnp.exp(scaled_bv - max_b1)
    log_z_b = max_b1[:, 0] + jnp.log(jnp.sum(weight_bv, axis=-1))
    if config.temperature == 0.0:
        token_b = jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
    else:
        if config.top_k > 0 or config.top_p < 1.0:
            weight_bv = jnp.where(keep_mask(scaled_bv, config.top_k, config.top_p), weight_bv, 0.0)
        if config.min_p > 0.0:
            weight_bv = jnp.where(weight_bv >= config.min_p, weight_bv, 0.0)
        token_b = inverse_cdf(weight_bv, 1.0 - uniform_b)
    logp_b = jnp.take_along_axis(scaled_bv, token_b[:, None], axis=-1)[:, 0] - log_z_b
    return token_b, logp_b
