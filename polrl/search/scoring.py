"""A process reward model's scores of partial responses, and where a response's steps end.

A process reward model (PRM) is a decoder with a value head whose value after the last token of
a partial response x ++ y_{≤t} estimates the probability that the response, continued by the
policy, reaches a correct answer ("Math-Shepherd: Verify and Reinforce LLMs Step-by-step without
Human Annotations", arXiv 2312.08935):

    p(x, y_{≤t}) = σ(w · h_{P+t} + b),

h_{P+t} the final hidden state after token y_t (the prompt's last token for an empty prefix).
A step of a response ends at a token equal to the task's step separator or at its last token
(``step_ends``); PRM labels, search and MCTS read p at step ends only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from polrl.collectors.score_position import score_index
from polrl.train.steps import sequence_inputs


def separator_id(task, caller: str) -> int:
    """The token id of ``task.step_separator`` (one token), with a one-line error naming ``caller``."""
    sep = task.step_separator
    ids = task.tokenizer.encode(sep) if sep and task.tokenizer is not None else []
    if len(ids) != 1:
        raise ValueError(f"{caller}: task {task.name!r} has step_separator={sep!r}, which must be one token; use a "
                         f"task whose responses are split into steps (e.g. 'chain')")
    return ids[0]


def step_ends(response_bt: jax.Array, mask_bt: jax.Array, separator_id: int) -> jax.Array:
    """bool [B, T]: True at each response token that ends a step — a masked token equal to
    ``separator_id``, or the last masked token of the row."""
    masked = mask_bt > 0
    last_b = score_index(mask_bt) - 1
    is_last = jnp.arange(mask_bt.shape[1])[None, :] == last_b[:, None]
    return masked & ((response_bt == separator_id) | is_last)


def token_scores(graphdef, params, prompt_bp, prompt_valid_bp, response_bt) -> jax.Array:
    """float32 [B, T]: p(x, y_{≤t}) after every response column t, from one forward over
    prompt ++ response (columns past a row's last token are meaningless)."""
    model = nnx.merge(graphdef, params)
    tokens, positions, valid = sequence_inputs(prompt_bp, prompt_valid_bp, response_bt)
    hidden, _ = model.forward(tokens, positions, valid)
    return jax.nn.sigmoid(model.value(hidden[:, prompt_bp.shape[1]:]))


def prefix_scores(graphdef, params, prompt_bp, prompt_valid_bp, response_bt, mask_bt) -> jax.Array:
    """float32 [B]: p(x, y) after each row's last masked response token (after the prompt for
    an empty response), from one forward over prompt ++ response."""
    model = nnx.merge(graphdef, params)
    tokens, positions, valid = sequence_inputs(prompt_bp, prompt_valid_bp, response_bt)
    hidden, _ = model.forward(tokens, positions, valid)
    last = prompt_bp.shape[1] - 1 + score_index(mask_bt)
    return jax.nn.sigmoid(model.value(jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]))
