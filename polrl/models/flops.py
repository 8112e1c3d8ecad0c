"""Inference compute of the decoder, counted: forward FLOPs for tokens that attend to a context.

Search programs (``polrl.search``) and benchmarks count what they spend with these, so a search
method and a larger model decoding greedily are compared at equal counted FLOPs.
"""
from __future__ import annotations

from polrl.models.transformer import TransformerConfig


def matmul_params(config: TransformerConfig) -> int:
    """Weights that take part in a matmul per token: attention, MLP and LM head (not the
    embedding lookup, norms or biases). A mixture-of-experts layer counts its router and the
    ``experts_per_token`` experts a token is routed to (what a sparse dispatch computes;
    :class:`polrl.models.moe.SparseMoE` computes all experts, see its cost note)."""
    d, e = config.d_model, config.head_dim
    attn = d * e * (2 * config.num_heads + 2 * config.num_kv_heads)  # wq, wo, wk, wv
    mlp = 3 * d * config.mlp_dim
    moe = d * config.num_experts + config.experts_per_token * 3 * d * config.expert_mlp_dim
    num_moe = len(config.moe_layers)
    dense = config.num_layers - num_moe
    return config.num_layers * attn + dense * mlp + num_moe * moe + d * config.vocab_size


def transformer_forward_flops(config: TransformerConfig, tokens: float, context: float) -> float:
    """Forward FLOPs for ``tokens`` tokens that each attend to ``context`` keys on average.

        FLOPs ≈ 2 · P_matmul · tokens  +  4 · L · H · e · context · tokens

    (2 FLOPs per multiply-add with each matmul weight, then q·kᵀ and A·v: 2 · H · e
    multiply-adds per attended key per layer). Norms, softmax and RoPE are ignored. The
    LM head is counted for every token.
    """
    attn = 4.0 * config.num_layers * config.num_heads * config.head_dim * context
    return (2.0 * matmul_params(config) + attn) * tokens
