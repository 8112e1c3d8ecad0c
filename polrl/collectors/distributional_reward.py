"""DRAGON's distributional reward: a group of samples scored as a set against exemplar sets."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from polrl.collectors.context import Context, check_one_group_per_prompt
from polrl.core import Collector

POSITIVE_SOURCES = ("answer",)


def token_sq_distances(tok_a, valid_a, tok_b, valid_b):
    """float [n, m]: ‖φ(a_i) − φ(b_j)‖² of the fixed embedding φ(y)[t, v] = 1[y_t = v]·valid_t (the
    per-position one-hot of the response's tokens; padding and tokens after EOS are zero):

        ‖φ(a) − φ(b)‖² = Σ_t (v_a,t + v_b,t − 2·v_a,t·v_b,t·1[a_t = b_t])

    i.e. 2 per position where both hold different tokens, 1 per position only one of them holds.
    ``tok_*`` int [·, W], ``valid_*`` [·, W] (bool or 0/1), same width W."""
    f = jnp.result_type(float)  # float32, or float64 under jax.enable_x64
    va, vb = jnp.asarray(valid_a).astype(f)[:, None, :], jnp.asarray(valid_b).astype(f)[None, :, :]
    same = (jnp.asarray(tok_a)[:, None, :] == jnp.asarray(tok_b)[None, :, :]).astype(f)
    return (va + vb - 2.0 * va * vb * same).sum(-1)


def gaussian_kernel(sq_dist, bandwidth: float):
    """k = exp(−d² / (2σ²)), σ = ``bandwidth``."""
    return jnp.exp(-sq_dist / (2.0 * bandwidth**2))


def mmd2(k_yy, k_ye, k_ee):
    """Biased (V-statistic) squared MMD between the set Y and the exemplar set E from their kernel
    matrices: mean k(y, y') − 2·mean k(y, e) + mean k(e, e') (every mean over all index pairs, so a
    duplicated exemplar set gives the same value)."""
    return k_yy.mean() - 2.0 * k_ye.mean() + k_ee.mean()


def leave_one_out_mmd2(k_yy, k_ye, k_ee):
    """float [n]: MMD²(Y ∖ {y_i}, E) for every i, in closed form from the full kernel sums
    (needs n ≥ 2):

        (Σ K_yy − 2 Σ_j K_yy[i, j] + K_yy[i, i]) / (n−1)²  −  2 (Σ K_ye − Σ_e K_ye[i, e]) / ((n−1) m)  +  mean K_ee
    """
    n, m = k_ye.shape
    yy = (k_yy.sum() - 2.0 * k_yy.sum(1) + jnp.diagonal(k_yy)) / (n - 1) ** 2
    ye = (k_ye.sum() - k_ye.sum(1)) / ((n - 1) * m)
    return yy - 2.0 * ye + k_ee.mean()


def set_distance_and_credit(tok_y, valid_y, pos, neg=None, *, bandwidth: float = 1.0, negative_weight: float = 1.0):
    """One group's set distance and per-sample credit.

    ``pos`` / ``neg`` are exemplar sets ``(tokens [m, W], valid [m, W])`` (``neg`` optional). With
    D(Y) = MMD²(Y, E⁺) − w·MMD²(Y, E⁻) (w = ``negative_weight``; lower is better), the credit of
    sample i is the leave-one-out change c_i = D(Y ∖ {y_i}) − D(Y): > 0 when y_i brings the set
    nearer the positive exemplars (or further from the negative ones). Returns
    ``(D, MMD²(Y, E⁺), MMD²(Y, E⁻) or 0, c [n])``."""
    def parts(ex):
        tok_e, valid_e = ex
        k_yy = gaussian_kernel(token_sq_distances(tok_y, valid_y, tok_y, valid_y), bandwidth)
        k_ye = gaussian_kernel(token_sq_distances(tok_y, valid_y, tok_e, valid_e), bandwidth)
        k_ee = gaussian_kernel(token_sq_distances(tok_e, valid_e, tok_e, valid_e), bandwidth)
        return mmd2(k_yy, k_ye, k_ee), leave_one_out_mmd2(k_yy, k_ye, k_ee)

    d_pos, loo_pos = parts(pos)
    d, loo = d_pos, loo_pos
    d_neg = jnp.zeros_like(d_pos)
    if neg is not None:
        d_neg, loo_neg = parts(neg)
        d, loo = d_pos - negative_weight * d_neg, loo_pos - negative_weight * loo_neg
    return d, d_pos, d_neg, loo - d


def _widen(x, width: int, fill):
    return jnp.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=fill)


def _encode(ctx: Context, texts, field: str):
    """Exemplar strings → (tokens [m, L], valid [m, L]) with the task's tokenizer, EOS appended
    (the layout of the task's labelled answers)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"with_distributional_reward: {field} must be a non-empty list of strings (exemplar responses)")
    if ctx.task.tokenizer is None:
        raise ValueError(f"with_distributional_reward: {field} given as strings needs a task with a tokenizer")
    ids = [ctx.task.tokenizer.encode(t, eos=True) for t in texts]
    width = max(map(len, ids))
    tok = np.full((len(ids), width), ctx.pad_id, np.int32)
    valid = np.zeros((len(ids), width), bool)
    for i, row in enumerate(ids):
        tok[i, :len(row)], valid[i, :len(row)] = row, True
    return tok, valid


def with_distributional_reward(*, positive="answer", negative=None, bandwidth: float = 1.0,
                               negative_weight: float = 1.0):
    """``(collector, context) -> collector`` whose ``reward_b`` is DRAGON's per-sample credit from a
    distribution-to-distribution reward ("DRAGON: Distributional Rewards Optimize Diffusion
    Generative Models", Bai et al. 2025, arXiv 2504.15217): each prompt's group of G samples is
    scored as a SET against exemplar sets, and each sample gets the leave-one-out change of the set
    score (``set_distance_and_credit``).

        φ(y)        per-position one-hot of the response tokens (``token_sq_distances``)
        k(a, b)     exp(−‖φ(a) − φ(b)‖² / (2σ²)),  σ = ``bandwidth``
        D(Y)        MMD²(Y, E⁺) − w·MMD²(Y, E⁻)           (biased MMD², ``mmd2``; w = ``negative_weight``)
        c_i         D(Y ∖ {y_i}) − D(Y)                   (> 0: y_i moves the set toward E⁺ / away from E⁻)

    Exemplar sets: ``positive="answer"`` is each prompt's labelled answer (built from the task's
    data inside the step, E⁺_k = {answer_k}), or a list of strings (one exemplar set shared by
    every group, tokenized with the task's tokenizer, EOS appended); ``negative`` is None (no
    negative set) or a list of strings. Everything runs inside the compiled step.

    Metrics: ``set_distance`` (mean over groups of D), ``set_mmd_positive`` (mean MMD²(Y, E⁺)),
    with a negative set ``set_mmd_negative``; ``reward_mean`` / ``credit_positive_frac`` /
    ``credit_negative_frac`` of the credits; ``verifier_reward_mean`` (the inner collector's reward
    of the same rows; its metrics, e.g. ``accuracy``, are kept). The inner collector must return
    one group of G ≥ 2 rows per prompt.

    INFERRED (the paper aligns a text-to-music diffusion model with encoders such as CLAP /
    VGGish and FAD against exemplar sets): the embedding here is a fixed, untrained one — the
    token one-hots — standing in for the paper's frozen pretrained encoder; the set distance is
    the kernel MMD rather than the Fréchet distance (a group of 8 short answers cannot estimate a
    covariance); the set is one prompt's group; each sample's credit is the leave-one-out change
    of the set score, which is how this reading turns the paper's set-level reward into the
    positive / negative split its on-policy demonstration sets need; the negative set enters
    D with weight w.
    """
    if not (isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool) and 0 < bandwidth < float("inf")):
        raise ValueError(f"with_distributional_reward: bandwidth={bandwidth!r} must be a finite number > 0 "
                         f"(the Gaussian kernel's σ, in one-hot distance units)")
    if not (isinstance(negative_weight, (int, float)) and not isinstance(negative_weight, bool)
            and 0 <= negative_weight < float("inf")):
        raise ValueError(f"with_distributional_reward: negative_weight={negative_weight!r} must be a finite number >= 0")
    if isinstance(positive, str) and positive not in POSITIVE_SOURCES:
        raise ValueError(f"with_distributional_reward: positive={positive!r}; use 'answer' (each prompt's labelled "
                         f"answer) or a list of exemplar strings")

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host:
            raise ValueError("with_distributional_reward: the inner collector runs on the host; score rows from a "
                             "device collector (e.g. group_samples)")
        pos_fixed = None if isinstance(positive, str) else _encode(ctx, positive, "positive")
        neg_fixed = None if negative is None else _encode(ctx, negative, "negative")

        def collect(cstate, state, data, rng):
            batch, inner_state, metrics = inner.collect(cstate, state, data, rng)
            prompts, g = data["prompt_bp"].shape[0], batch.group_size
            check_one_group_per_prompt(batch, prompts, "with_distributional_reward")
            if g < 2:
                raise ValueError(f"with_distributional_reward: group_size={g}; the leave-one-out credit needs >= 2 "
                                 f"samples per prompt (raise rollout.group_size)")
            sets = [(data["answer_ba"], data["answer_valid_ba"])] if pos_fixed is None else [pos_fixed]
            sets += [] if neg_fixed is None else [neg_fixed]
            width = max([batch.response_bt.shape[1]] + [t.shape[1] for t, _ in sets])
            tok_y = _widen(batch.response_bt, width, ctx.pad_id).reshape(prompts, g, width)
            valid_y = _widen(batch.mask_bt > 0, width, False).reshape(prompts, g, width)
            widened = [(_widen(jnp.asarray(t), width, ctx.pad_id), _widen(jnp.asarray(v, bool), width, False))
                       for t, v in sets]
            pos = widened[0]
            if pos_fixed is None:  # one exemplar per prompt: its labelled answer
                pos = (pos[0][:, None, :], pos[1][:, None, :])
                pos_axis = 0
            else:
                pos_axis = None
            neg = widened[1] if neg_fixed is not None else None
            fn = lambda ty, vy, p, n: set_distance_and_credit(ty, vy, p, n, bandwidth=bandwidth,
                                                              negative_weight=negative_weight)
            d, d_pos, d_neg, credit = jax.vmap(fn, in_axes=(0, 0, pos_axis, None))(tok_y, valid_y, pos, neg)
            credit_b = credit.reshape(-1).astype(jnp.float32)
            out = {**metrics, "reward_mean": credit_b.mean(), "set_distance": d.mean(),
                   "set_mmd_positive": d_pos.mean(),
                   "credit_positive_frac": (credit_b > 0).mean(), "credit_negative_frac": (credit_b < 0).mean(),
                   "reward_finite": jnp.isfinite(credit_b).all() & metrics.get("reward_finite", True)}
            if neg is not None:
                out["set_mmd_negative"] = d_neg.mean()
            if batch.reward_b is not None:
                out["verifier_reward_mean"] = batch.reward_b.mean()
            return batch.replace(reward_b=credit_b), inner_state, out

        return inner._replace(collect=collect)

    return wrap
