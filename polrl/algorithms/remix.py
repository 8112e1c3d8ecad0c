"""ReMix: Reincarnating Mix-policy Proximal Policy Gradient (Liang et al. 2025, arXiv 2507.06892)."""
from __future__ import annotations

import jax

from polrl import advantages, objectives, ops
import jax.numpy as jnp

from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.collectors import with_replay
from polrl.core import REPLAY, Algorithm, Batch, Transform, stateless

_KL = {"k1": ops.kl_k1, "k2": ops.kl_k2, "k3": ops.kl_k3}


def replayed_rows_keep_their_behaviour() -> Transform:
    """π_old of a replayed row is the policy that sampled it: ``old_logp_bt`` ← the row's
    ``behavior_logp_bt`` where ``source_b == REPLAY`` (fresh rows keep the recomputed π_old), so
    the clipped ratio of a replayed token is π_θ / π_behaviour. Needs ``old_logp``."""

    def fn(batch: Batch) -> Batch:
        batch.require("old_logp_bt", "behavior_logp_bt", "source_b", by="replayed_rows_keep_their_behaviour")
        replayed = (batch.source_b == REPLAY)[:, None]
        return batch.replace(old_logp_bt=jnp.where(replayed, batch.behavior_logp_bt, batch.old_logp_bt))

    return stateless(fn, needs=("old_logp",))


def kl_convex_penalty(*, coef: float, mix: float, estimator: str = "k3") -> Transform:
    """ReMix's KL-Convex constraint per token, term ``"kl"``:

        β · [ λ · k(π_θ, π_ref) + (1 − λ) · k(π_θ, π_old) ]

    with k a per-token KL estimator (k1/k2/k3, see ``polrl.ops.kl``), λ = ``mix`` ∈ [0, 1], the
    base model π_ref (the frozen reference) and the precedent policy π_old: each row's
    ``old_logp_bt`` — for fresh rows the policy at the start of this update (the precedent of
    the step's gradient steps), for replayed rows the behaviour policy that generated them
    (INFERRED: the paper's π_{θ_{k−1}} is not evaluated on replayed rows, which would need an
    extra forward pass). λ = 1 is GRPO's KL to the reference; λ = 0 only the proximal term.
    Logs ``kl_ref`` / ``kl_old`` (token means of each estimate). Needs ``ref_logp`` when λ > 0.
    """
    if estimator not in _KL:
        raise ValueError(f"kl_convex_penalty: unknown estimator {estimator!r}; use one of {sorted(_KL)}")
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"kl_convex_penalty: mix (λ) must be in [0, 1], got {mix}")
    kl_fn = _KL[estimator]

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", by="kl_convex_penalty")
        kl_old = kl_fn(batch.logp_bt, objectives.old_logp(batch))
        kl_bt = (1.0 - mix) * kl_old
        sg_mean = lambda x: ops.masked_mean(jax.lax.stop_gradient(x), batch.mask_bt)
        metrics = {"kl_old": sg_mean(kl_old)}
        if mix > 0:
            batch.require("ref_logp_bt", by="kl_convex_penalty")
            kl_ref = kl_fn(batch.logp_bt, batch.ref_logp_bt)
            kl_bt = kl_bt + mix * kl_ref
            metrics["kl_ref"] = sg_mean(kl_ref)
        return batch.add_term("kl", coef * kl_bt).add_metrics(**metrics)

    return stateless(fn, needs=("ref_logp",) if mix > 0 else ())


def remix(
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    replay_groups: int = 8,
    buffer_groups: int = 64,
    kl_coef: float = 0.001,
    kl_mix: float = 0.5,
    kl_estimator: str = "k3",
    scale: str = "std",
    ddof: int = 1,
    filter_zero_variance: bool = False,
    aggregation: str = "seq_mean_token_mean",
    num_epochs: int = 2,
    num_minibatches: int = 2,
    **options,
) -> Algorithm:
    """ReMix's mix-policy proximal policy gradient on GRPO (Liang et al. 2025, arXiv 2507.06892).

    Each rollout batch of fresh groups is mixed with R = ``replay_groups`` groups replayed from
    a buffer of the last ``buffer_groups`` groups (the collector wrapper
    ``polrl.collectors.with_replay``; with ``filter_zero_variance`` groups without reward
    variance are neither stored nor trained on); advantages as GRPO's
    (``advantages.group_advantage``, a group's from its own rewards), and every row keeps its own
    behaviour log-probs (``replayed_rows_keep_their_behaviour``), so

        ρ_i,t = π_θ(o_i,t) / π_{θ_{k−j}}(o_i,t)     (j = the row's staleness, 0 for fresh rows)
        L     = agg[ max(−A_i ρ_i,t, −A_i clip(ρ_i,t, 1−ε_low, 1+ε_high))
                     + β (λ KL(π_θ‖π_ref) + (1−λ) KL(π_θ‖π_old))_t ]      (KL-Convex)

    with a higher update-to-data ratio than on-policy GRPO: ``num_epochs`` × ``num_minibatches``
    gradient steps per rollout batch (the minibatches must divide the grown batch of B/G + R
    groups; the trainer checks it before compiling).

    Policy reincarnation, the paper's third component, is a second phase: at step T_r the run
    restarts on-policy (e.g. ``grpo``, one update per batch, no replay) with the reference
    reset to the current policy — declare it in the experiment config with ``config.then``
    (``polrl.train.build``); every phase takes its reference from its start parameters.

    Defaults: ε = 0.2, ``seq_mean_token_mean`` (GRPO's), k3 estimator. INFERRED — only the
    abstract and project page of the paper were available (the three components and their roles
    are stated there, the exact objective and the values of the buffer size, replay ratio, λ, β,
    UTD and T_r are not): the KL-Convex term is a per-token
    convex combination of KL estimators; the precedent policy of a replayed row is its
    behaviour policy (see ``kl_convex_penalty``) and its π_old in the ratio too; R = 8 of 64
    stored groups, λ = 0.5, β = 0.001 and 2 epochs × 2 minibatches are
    this implementation's choices, not the paper's.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, no entropy bonus), all but the prepare-side
    ``kl_in``, ``kl_target``, ``correction`` and ``correction_threshold`` (``kl_coef`` and
    ``kl_estimator`` are the KL-Convex term's).
    """
    check_options("remix", options, without=REWARD_SIDE_OPTIONS)
    prepare = [advantages.group_advantage(scale=scale, ddof=ddof)]
    if filter_zero_variance:
        prepare.append(advantages.drop_zero_variance_groups())
    prepare.append(replayed_rows_keep_their_behaviour())
    terms = [objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high)]
    if kl_coef:
        terms.append(kl_convex_penalty(coef=kl_coef, mix=kl_mix, estimator=kl_estimator))
    replay = with_replay(capacity=buffer_groups, num_replay=replay_groups, skip_zero_variance=filter_zero_variance)
    return pg_algorithm(
        prepare, *terms, kl_coef=0.0, aggregation=aggregation, num_epochs=num_epochs,
        num_minibatches=num_minibatches, collector=replay, **options,
    )
