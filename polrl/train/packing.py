"""Sequence packing for the scoring forward: several sequences share one row, each attending only
to itself, with RoPE positions that restart at every sequence.

A scoring batch holds B sequences ``prompt ++ response`` laid out as [B, P + T] (left-padded
prompts, right-padded responses), so a forward computes P + T positions per row whatever the
sequence's real length n_b. Packing moves the real tokens of every sequence into R rows of L
columns,

    tokens_rl[r_b, o_b + c] = x_b[c],   positions_rl[r_b, o_b + c] = c,   segment_rl[r_b, o_b + c] = b + 1,

for c = 0 … n_b − 1 (the sequence's real tokens in order, pads left out), and the forward runs
on [R, L] with query i seeing key j iff j ≤ i and both carry the same segment id (0 marks the
row's unused tail, which no real token sees). Every real token then has the same context and
the same RoPE position as in the unpacked layout, so its hidden state — hence every log-prob,
loss and gradient — is the unpacked one's; only the summation order inside the attention
softmax (over fewer masked-out keys) can differ, by float rounding. The hidden states that
predict response tokens are gathered back to [B, T, d], so everything after the forward is
unchanged. Compute and activation memory go from B·(P + T) to R·L positions.

What counts as real: the prompt's valid tokens, and the response up to its last token with
``mask_bt`` = 1 (tokens inside a response that the mask leaves out — a tool's observation — are
context and stay). Response positions past that point are not scored: their log-probs and
entropies are 0 (they are masked out of every loss).

The layout is next-fit in row order: sequence b goes at the current row's end when it fits in
the L − o columns left, else at the start of the next row. Shapes are static (R, L from the
model config); a step whose sequences need more than R rows, or one longer than L, runs the
unpacked forward instead (``lax.cond``: same values), and ``fits`` says which ran.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def sequence_lengths(prompt_valid_bp: jax.Array, mask_bt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Real tokens per sequence n_b = valid prompt tokens + response tokens through the last
    masked-in one, and that response length (both [B] int32)."""
    t = mask_bt.shape[1]
    last = jnp.max(jnp.where(mask_bt > 0, jnp.arange(1, t + 1), 0), axis=1).astype(jnp.int32)
    return prompt_valid_bp.sum(1).astype(jnp.int32) + last, last


def next_fit(lengths_b: jax.Array, length: int, rows: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Row r_b and start column o_b of every sequence (next-fit, in order), and whether all fit
    in ``rows`` rows of ``length`` columns."""

    def place(carry, n):
        row, used = carry
        new_row = used + n > length
        row, start = jnp.where(new_row, row + 1, row), jnp.where(new_row, 0, used)
        return (row, start + n), (row, start)

    (last_row, _), (row_b, start_b) = jax.lax.scan(place, (jnp.int32(0), jnp.int32(0)), lengths_b)
    fits = (last_row < rows) & jnp.all(lengths_b <= length)
    return row_b, start_b, fits


def packed_columns(valid_bs: jax.Array, real_len_b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """For every column s of the unpacked [B, S] layout: whether it holds a real token, and its
    index c among the sequence's real tokens (its RoPE position); the packed column is o_b + c."""
    real = valid_bs & (jnp.cumsum(valid_bs, axis=1) <= real_len_b[:, None])
    index = jnp.cumsum(real, axis=1, dtype=jnp.int32) - 1
    return real, index


def pack(tokens_bs, valid_bs, real_len_b, length: int, rows: int):
    """The packed inputs [R, L] (tokens, positions, segment ids) and, per unpacked column, its
    (row, column) in the packed layout; ``fits`` as in :func:`next_fit`."""
    row_b, start_b, fits = next_fit(real_len_b, length, rows)
    real, index = packed_columns(valid_bs, real_len_b)
    b = tokens_bs.shape[0]
    row_bs = jnp.broadcast_to(row_b[:, None], tokens_bs.shape)
    col_bs = start_b[:, None] + index
    # Padding columns go out of range and are dropped by the scatter.
    drop_row = jnp.where(real, row_bs, rows)
    tokens = jnp.zeros((rows, length), tokens_bs.dtype).at[drop_row, col_bs].set(tokens_bs, mode="drop")
    positions = jnp.zeros((rows, length), jnp.int32).at[drop_row, col_bs].set(index, mode="drop")
    segment_id = jnp.broadcast_to(jnp.arange(1, b + 1, dtype=jnp.int32)[:, None], tokens_bs.shape)
    segments = jnp.zeros((rows, length), jnp.int32).at[drop_row, col_bs].set(segment_id, mode="drop")
    return (tokens, positions, segments), (row_bs, col_bs, real), fits


def unpack(packed_rl: jax.Array, row_bs: jax.Array, col_bs: jax.Array) -> jax.Array:
    """Values of the packed layout [R, L, …] at the unpacked columns [B, S] (clipped indices for
    columns without a real token: callers mask those)."""
    return packed_rl[row_bs, jnp.clip(col_bs, 0, packed_rl.shape[1] - 1)]
