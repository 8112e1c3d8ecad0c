"""A masked-diffusion language model: the polrl decoder blocks with bidirectional attention.

LLaDA ("Large Language Diffusion Models", arXiv 2502.09992) predicts every masked token of a
sequence at once from a transformer without a causal mask:

    x₀ = E[tokens],  x_{l+1} = Block_l(x_l) (pre-norm, RoPE, gated MLP: ``polrl.models``),
    query t sees key s iff valid[s]   (no s ≤ t condition),
    log p_θ(· | x_t) = log_softmax(RMSNorm(x_L) · E[:V]ᵀ)   at every position.

Vocabulary: the V ids of the task's char tokenizer plus one mask id ``MASK = V`` (the embedding
has V + 1 rows). The head scores the V real ids only, so every position's prediction is a
distribution over real tokens and the mask id is never produced.

Rows are ``[prompt | response]``: the prompt is left-padded (pads invalid, RoPE positions
``cumsum(valid) − 1`` as in ``polrl.models.transformer``), the response has a fixed length L and is
never padded (LLaDA fills the tail of a response with EOS ids, which are trained like any token).
Only response positions are ever masked; the prompt is always visible.

INFERRED: the head is tied to the embedding rows of the real ids (LLaDA's head is untied and
covers the mask id too; excluding it makes the predictions proper distributions over the tokens
the likelihood is defined on).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from polrl.models.layers import RMSNorm, param, rope_tables, wide
from polrl.models.transformer import Block, TransformerConfig


def mask_id(config: TransformerConfig) -> int:
    """The mask id: the last row of the embedding (``vocab_size − 1``)."""
    return config.vocab_size - 1


def diffusion_config(num_tokens: int, **kw) -> TransformerConfig:
    """A :class:`TransformerConfig` whose embedding holds ``num_tokens`` real ids + the mask id."""
    if not isinstance(num_tokens, int) or num_tokens < 2:
        raise ValueError(f"diffusion_config: num_tokens must be an int >= 2 (the tokenizer's vocab_size), "
                         f"got {num_tokens!r}.")
    return TransformerConfig(vocab_size=num_tokens + 1, **kw)


class MaskedDiffusionLM(nnx.Module):
    """Bidirectional transformer; ``__call__`` gives log-probabilities over the real ids."""

    def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
        cfg = config
        if cfg.sliding_layers or cfg.moe_layers or cfg.value_head or not cfg.tie_embeddings:
            raise ValueError("MaskedDiffusionLM: use a plain tied config (no sliding_layers, moe_layers or "
                             "value_head; tie_embeddings=True); build it with diffusion_config(...).")
        self.config = cfg
        embed_init = nnx.initializers.normal(stddev=cfg.d_model ** -0.5)
        self.embed = param(rngs, embed_init, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), cfg.param_dtype)
        self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                                  rngs=rngs, offset=cfg.norm_offset)

    def __call__(self, tokens_bt: jax.Array, valid_bt: jax.Array) -> jax.Array:
        """log p_θ(· | tokens) [B, T, V] over the V = vocab_size − 1 real ids, in float32 (``wide``)."""
        cfg = self.config
        b, t = tokens_bt.shape
        assert valid_bt.shape == (b, t) and valid_bt.dtype == jnp.bool_, (valid_bt.shape, valid_bt.dtype)
        positions_bt = jnp.maximum(jnp.cumsum(valid_bt, axis=1) - 1, 0).astype(jnp.int32)
        visible_bts = jnp.broadcast_to(valid_bt[:, None, :], (b, t, t))
        rope_cs = rope_tables(positions_bt, cfg.head_dim, cfg.rope_theta, cfg.max_len, cfg.rope_scaling,
                              wide(cfg.dtype))
        block = nnx.remat(Block.__call__) if cfg.remat else Block.__call__
        x = jnp.take(self.embed[...], tokens_bt, axis=0).astype(cfg.dtype)
        for layer in self.layers:
            x, _ = block(layer, x, rope_cs, visible_bts, None, None)
        acc = wide(cfg.dtype)
        hidden = self.final_norm(x).astype(acc)
        logits = jnp.einsum("btd,vd->btv", hidden, self.embed[: cfg.vocab_size - 1].astype(acc))
        return jax.nn.log_softmax(logits, axis=-1)
