"""Sparse mixture-of-experts MLP (Qwen3-MoE): a router sends each token to k of E gated-MLP experts.

For a token x ∈ R^d: router logits z = x W_r (W_r [d, E]), probabilities p = softmax(z) over
the E experts, S = the indices of the k largest p_j (top-k), routing weights w_j = p_j for
j ∈ S (w_j = p_j / Σ_{i∈S} p_i when ``renormalize_topk``, HF's ``norm_topk_prob``) and 0
elsewhere, and

    y = Σ_{j∈S} w_j · (act(x G_j) ⊙ (x U_j)) D_j

with expert j's kernels G_j, U_j [d, f_e] and D_j [f_e, d] (the gated MLP of
:class:`polrl.models.layers.MLP`), stacked along a leading expert axis of logical name
``expert`` (sharding rules may split it over an ``expert`` mesh axis, :mod:`polrl.sharding`).
Sparsely-gated experts: "Outrageously Large Neural Networks: The Sparsely-Gated
Mixture-of-Experts Layer" (arXiv:1701.06538); this router (softmax, then top-k, optionally
renormalised) is Qwen3-MoE's, "Qwen3 Technical Report" (arXiv:2505.09388).

Cost: computed densely. Every token runs through all E experts and the unselected outputs get
weight 0, so the layer costs E/k times the FLOPs of a sparse dispatch (16× for E = 128, k = 8)
and holds [b, t, E, f_e] activations. In exchange it is exact and simple: no token is dropped,
there is no capacity factor, and the routing is the same in every forward. The gradient reaches
the router through the selected weights w_j only (the top-k choice has none), as in HF.

INFERRED: router logits and softmax run in float32 (``layers.wide``) whatever the compute dtype
(HF computes the logits in the model dtype, the softmax in float32; the same in float32).
Not implemented: the router's auxiliary load-balancing loss ("Switch Transformers",
arXiv:2101.03961; HF's ``router_aux_loss_coef``). Logits do not depend on it; a run that wants
it has no term for it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from polrl.models.layers import ACTIVATIONS, fan_in_normal, param, wide


class SparseMoE(nnx.Module):
    """Top-k mixture of ``num_experts`` gated MLPs of width ``expert_mlp_dim`` (module docstring)."""

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        d, n, f, pd = cfg.d_model, cfg.num_experts, cfg.expert_mlp_dim, cfg.param_dtype
        self.dtype = cfg.dtype
        self.activation = cfg.activation
        self.top_k = cfg.experts_per_token
        self.renormalize = cfg.renormalize_topk
        self.router = param(rngs, fan_in_normal(d), (d, n), ("embed", "expert"), pd)
        self.experts_gate = param(rngs, fan_in_normal(d), (n, d, f), ("expert", "embed", "mlp"), pd)
        self.experts_up = param(rngs, fan_in_normal(d), (n, d, f), ("expert", "embed", "mlp"), pd)
        self.experts_down = param(rngs, fan_in_normal(f), (n, f, d), ("expert", "mlp", "embed"), pd)

    def routing_weights(self, x_btd: jax.Array) -> jax.Array:
        """w [b, t, E] (float32): top-k softmax probabilities, renormalised if set, 0 elsewhere."""
        acc = wide(self.dtype)
        probs = jax.nn.softmax(x_btd.astype(acc) @ self.router[...].astype(acc), axis=-1)
        top_btk, index_btk = jax.lax.top_k(probs, self.top_k)
        if self.renormalize:
            top_btk = top_btk / jnp.sum(top_btk, axis=-1, keepdims=True)
        chosen_btke = jax.nn.one_hot(index_btk, probs.shape[-1], dtype=acc)
        return jnp.einsum("btk,btke->bte", top_btk, chosen_btke)

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        w_bte = self.routing_weights(x_btd).astype(self.dtype)
        gate = jnp.einsum("btd,edf->btef", x_btd, self.experts_gate[...].astype(self.dtype))
        up = jnp.einsum("btd,edf->btef", x_btd, self.experts_up[...].astype(self.dtype))
        # Weighting before the (linear) down projection sums the experts inside one einsum.
        hidden = ACTIVATIONS[self.activation](gate) * up * w_bte[..., None]
        return jnp.einsum("btef,efd->btd", hidden, self.experts_down[...].astype(self.dtype))
