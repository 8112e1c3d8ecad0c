"""Tiny test models whose parameters are drawn with numpy (no initializer is compiled), and a tiny step's data."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from polrl.models import Transformer, TransformerConfig


def tiny_params(config: TransformerConfig, seed: int = 0):
    """(graphdef, params) of a Transformer, its parameters drawn with numpy following the model's
    own initializers (so no initializer is compiled; the value head is random, not 0)."""
    abstract = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    graphdef, shapes = nnx.split(abstract, nnx.Param)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "scale" in name:
            return np.ones(leaf.shape, leaf.dtype)
        if "value_b" in name:
            return np.zeros(leaf.shape, leaf.dtype)
        if "embed" in name or "lm_head" in name:
            std = config.d_model ** -0.5  # as the model's own embedding init
        elif "wo" in name:
            std = (leaf.shape[0] * leaf.shape[1]) ** -0.5  # fan-in = heads × head_dim
        else:
            std = leaf.shape[0] ** -0.5  # fan-in; the value head too (not 0, unlike the model)
        return np.asarray(rng.normal(0.0, std, leaf.shape), leaf.dtype)

    return graphdef, jax.device_put(jax.tree_util.tree_map_with_path(draw, shapes))


def two_prompt_data(vocab: int, pad: int) -> dict:
    """A step's data for two 3-token prompts with 2- and 1-token labelled answers (pad after
    them), token ids drawn in [1, vocab − 1) for prompts and [1, vocab) for answers, seed 0."""
    rng = np.random.default_rng(0)
    answer_valid = np.array([[True, True, False], [True, False, False]])
    return {"prompt_bp": jnp.asarray(rng.integers(1, vocab - 1, (2, 3)), jnp.int32),
            "prompt_valid_bp": jnp.ones((2, 3), bool),
            "answer_ba": jnp.asarray(np.where(answer_valid, rng.integers(1, vocab, (2, 3)), pad), jnp.int32),
            "answer_valid_ba": jnp.asarray(answer_valid)}
