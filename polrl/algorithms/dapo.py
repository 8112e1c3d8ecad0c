"""DAPO: decoupled clip and dynamic sampling policy optimization."""
from __future__ import annotations

import jax.numpy as jnp

from polrl import advantages, objectives
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.collectors import dynamic_sampling
from polrl.core import Algorithm, Batch, Transform, stateless


def overlong_penalty(*, max_len: int, buffer: int, factor: float = 1.0) -> Transform:
    """DAPO's soft overlong punishment, added to ``reward_b`` (lengths in response TOKENS).

        |y| ≤ L_max − L_buf:           R_len = 0
        L_max − L_buf < |y| ≤ L_max:   R_len = factor · ((L_max − L_buf) − |y|) / L_buf
        |y| > L_max:                   R_len = −factor

    (Yu et al. 2025, arXiv 2503.14476, "soft overlong punishment"; verl's ``dapo`` reward
    manager computes the same linear zone without the −1 floor, which only differs for
    |y| > L_max.) |y| = the number of valid response tokens (``mask_bt``, EOS included). Run it
    BEFORE the advantage. Logs
    ``overlong_frac`` (rows in the penalty zone) and ``overlong_penalty`` (mean R_len).
    """
    if not 0 < buffer <= max_len:
        raise ValueError(f"overlong_penalty: need 0 < buffer ({buffer}) <= max_len ({max_len})")

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", by="overlong_penalty")
        length_b = batch.mask_bt.sum(-1)
        penalty_b = factor * jnp.clip(((max_len - buffer) - length_b) / buffer, -1.0, 0.0)
        return batch.replace(reward_b=batch.reward_b + penalty_b).add_metrics(
            overlong_frac=(penalty_b < 0).mean(), overlong_penalty=penalty_b.mean()
        )

    return stateless(fn)


def dapo(
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    oversample: int = 3,
    filter_zero_variance: bool = True,
    overlong_max_len: int | None = None,
    overlong_buffer: int | None = None,
    overlong_factor: float = 1.0,
    **options,
) -> Algorithm:
    """DAPO (Yu et al. 2025, arXiv 2503.14476) = GRPO + clip-higher + token-mean + filtering.

        R'_i  = R_i + R_len(|y_i|)                                     (soft overlong punishment)
        A_i   = (R'_i − mean_g R') / (std_g R' + 1e-6)                  (GRPO advantage)
        L     = Σ_{i,t} max(−A_i ρ_i,t, −A_i clip(ρ_i,t, 1−ε_low, 1+ε_high)) / Σ_i |y_i|

    * clip-higher: ε_low = 0.2, ε_high = 0.28;
    * token-level loss: ``token_mean`` over the whole minibatch;
    * no KL (β = 0);
    * dynamic sampling: each step draws ``oversample`` × the prompts (the collector wrapper ``polrl.collectors.dynamic_sampling(oversample)``;
      the trainer keeps the groups whose rewards are not all equal first,
      ``rollouts.keep_informative_groups``) and any zero-variance group still kept is masked out
      (``drop_zero_variance_groups``). The default 3 follows verl's DAPO recipe
      (``gen_prompt_bsz = 3 × train_prompt_bsz``); ``oversample=1`` keeps the filter only.
      Oversampling needs a task with a device reward;
    * overlong shaping (``overlong_penalty``) when ``overlong_max_len`` (the generation budget
      L_max, in tokens) and ``overlong_buffer`` (L_buf) are given; the paper uses L_max = 20480,
      L_buf = 4096, factor 1.

    Checked: verl's DAPO recipe scripts set clip 0.2 / 0.28,
    ``loss_agg_mode=token-mean``, no KL in reward or loss, ``filter_groups`` on, 3× generation
    prompts, ``overlong_buffer_len=4096`` with ``max_response_length=20480`` and factor 1.0.

    Other keywords: see ``pg_algorithm`` (its defaults are DAPO's: lr 1e-6, β = 0,
    ``token_mean``, one update per batch).
    """
    check_options("dapo", options)
    if (overlong_max_len is None) != (overlong_buffer is None):
        raise ValueError("dapo: give both overlong_max_len and overlong_buffer (or neither, for no length shaping)")
    if oversample < 1:
        raise ValueError(f"dapo: oversample={oversample} must be >= 1")
    prepare = []
    if overlong_max_len is not None:
        prepare.append(overlong_penalty(max_len=overlong_max_len, buffer=overlong_buffer, factor=overlong_factor))
    prepare.append(advantages.group_advantage(scale="std"))
    if filter_zero_variance:
        prepare.append(advantages.drop_zero_variance_groups())
    return pg_algorithm(
        prepare, objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        collector=dynamic_sampling(oversample), **options,
    )
