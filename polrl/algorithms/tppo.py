"""T-PPO: Truncated PPO with Extended GAE (Fan et al. 2025, ByteDance Seed, arXiv 2506.15050)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import objectives, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm, separate_critic
from polrl.collectors.partial_rollouts import BOOTSTRAP, FINISHED, RESPONSE_MASK
from polrl.core import Algorithm, Batch, Transform, stateless


def _last_token(mask_bt: jax.Array) -> jax.Array:
    """[B, T] bool: the last masked-in token of each row (its masked-in tokens are contiguous)."""
    return (jnp.cumsum(mask_bt[:, ::-1], axis=1)[:, ::-1] == 1.0) & (mask_bt > 0)


def egae_advantage(
    *, window: int | None, gamma: float = 1.0, lambda_: float = 0.95, value_lambda: float = 1.0
) -> Transform:
    """Extended GAE over generation windows, and Monte-Carlo value targets (T-PPO).

    **Partial rollouts** (rows of ``collectors.partial_groups``, which carry ``aux["finished_b"]``;
    ``window`` must then be None: the collector's windows are the real ones). ``mask_bt`` holds
    the tokens [a, e] drawn this step; a row that finished this step (EOS or the budget) ends
    there with its reward R, a row still running is cut at e and bootstraps from the value of
    the state after its last token, V(s_{e+1}) (``aux["bootstrap_value_b"]``):

        δ_t = r_t + γ V_{t+1} − V_t  (t ∈ [a, e]),   V_{e+1} = 0 if finished else V(s_{e+1}),
        r_e = R if finished, else 0
        Â_t = Σ_{k=0}^{e−t} (γλ)^k δ_{t+k}

    (``ops.gae_bt`` over the window, with the bootstrap folded into the last reward: r_e = γ V(s_{e+1})).
    The value head trains on the finished rows only, on every token of their whole responses
    (``aux["response_mask_bt"]``, windows of earlier steps included), towards Monte-Carlo
    returns G_t = γ^{L−1−t} R (``return_bt``, 0 on the other rows; ``value_lambda`` must be 1:
    earlier windows' values are not recomputed, so only λ_v = 1 targets exist).

    **Complete rows** (any other collector): ``window=None`` is one window, Â is plain GAE and the
    value targets use their own λ (G_t = GAE_{λ_v}(t) + V_t; with ``value_lambda = λ`` this
    transform equals ``advantages.gae_advantage``). An int ``window`` W emulates the windows over
    complete rows: the (γλ) chain is cut after every W-th token, λ_t = λ·[(t+1) mod W ≠ 0], while δ
    there still bootstraps from V_{t+1} — every token gets the advantage it would get in the step
    that generated its window, without the wall-clock saving of partial rollouts (use
    ``partial_groups`` for those).

    Values are the rollout-time value head (``old_value_bt``; need ``"values"``).

    INFERRED (the paper's equations were not available): the bootstrap above is this
    implementation's reading of "advantage estimation derived from incomplete responses"; the
    decoupled λ for the critic follows the same group's VC-PPO (arXiv 2503.01491).
    """
    if window is not None and window < 1:
        raise ValueError(f"egae_advantage: window={window} must be >= 1 tokens (or None)")

    def partial(batch: Batch) -> Batch:
        if window is not None:
            raise ValueError(f"egae_advantage: window={window} emulates windows over complete rows, but the rows come "
                             f"from partial_groups, whose windows are the real ones; set algorithm_kwargs.window=None")
        if value_lambda != 1.0:
            raise ValueError(f"egae_advantage: value_lambda={value_lambda} needs the values of earlier windows, which "
                             f"partial rollouts do not keep; set algorithm_kwargs.value_lambda=1.0 (Monte-Carlo targets)")
        batch.require_aux(FINISHED, RESPONSE_MASK, BOOTSTRAP, by="egae_advantage",
                          provider="partial_groups(values=True)")
        finished = batch.aux[FINISHED] > 0
        end = jnp.where(finished, batch.reward_b, gamma * batch.aux[BOOTSTRAP])
        reward_bt = jnp.where(_last_token(batch.mask_bt), end[:, None], 0.0)
        adv_bt = ops.gae_bt(reward_bt, batch.old_value_bt, batch.mask_bt, gamma=gamma, lambda_=lambda_)
        full = batch.aux[RESPONSE_MASK] * finished[:, None]
        final_bt = jnp.where(_last_token(full), batch.reward_b[:, None], 0.0)
        return_bt = ops.gae_bt(final_bt, jnp.zeros_like(full), full, gamma=gamma, lambda_=1.0)
        return batch.replace(adv_bt=adv_bt, return_bt=return_bt * full)

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "old_value_bt", by="egae_advantage")
        if FINISHED in batch.aux:
            return partial(batch)
        mask, values = batch.mask_bt, batch.old_value_bt
        t = mask.shape[1]
        reward_bt = jnp.where(_last_token(mask), batch.reward_b[:, None], 0.0)
        lambda_t = lambda_
        if window is not None and window < t:
            lambda_t = lambda_ * ((jnp.arange(1, t + 1) % window) != 0).astype(jnp.float32)
        adv_bt = ops.gae_bt(reward_bt, values, mask, gamma=gamma, lambda_=lambda_t)
        target_adv = ops.gae_bt(reward_bt, values, mask, gamma=gamma, lambda_=value_lambda)
        return batch.replace(adv_bt=adv_bt, return_bt=(target_adv + values) * mask)

    return stateless(fn, needs=("values",))


def finished_value_loss(*, coef: float = 0.5, clip: float | None = 0.2, detached: bool = False) -> Transform:
    """The value loss of T-PPO: on partial rollouts, over the finished rows' whole responses.

    With ``aux["finished_b"]`` (``partial_groups``) the loss ``"value"`` is the token mean over
    the tokens w_t = 1 of the rows that finished this step (every token of their responses):

        L = c · ½ Σ_t w_t ℓ_t / Σ_t w_t,
        ℓ_t = max((V_t − G_t)², (V_old,t + clip(V_t − V_old,t, ±ε_v) − G_t)²)

    where the clipped branch applies on this step's tokens only (``mask_bt``: the rollout-time
    values V_old the trainer computed) and ℓ_t = (V_t − G_t)² on the earlier windows' tokens. A
    minibatch without finished rows has no value loss. On complete rows this is
    ``objectives.value_loss`` (a per-token term aggregated with the policy loss). ``detached``: the
    values are computed under stop_gradient of the trunk (see ``objectives.value_loss``).
    """
    complete = objectives.value_loss(coef=coef, clip=clip, detached=detached)

    def fn(batch: Batch) -> Batch:
        if FINISHED not in batch.aux:
            return complete.apply(batch, ())[0]
        batch.require("value_bt", "old_value_bt", "return_bt", by="finished_value_loss")
        weight = batch.aux[RESPONSE_MASK] * batch.aux[FINISHED][:, None]
        v, v_old, g = batch.value_bt, batch.old_value_bt, batch.return_bt
        err = (v - g) ** 2
        if clip is not None:
            err = jnp.where(batch.mask_bt > 0, jnp.maximum(err, (v_old + jnp.clip(v - v_old, -clip, clip) - g) ** 2), err)
        batch = batch.add_metrics(value_error=ops.masked_mean(jax.lax.stop_gradient(err), weight))
        return batch.add_loss("value", 0.5 * coef * ops.masked_mean(err, weight))

    return stateless(fn, needs=tuple(complete.needs))


def tppo(
    *,
    window: int | None = None,
    learning_rate: float = 1e-5,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    dual_clip: float | None = 3.0,
    gamma: float = 1.0,
    lambda_: float = 0.95,
    value_lambda: float = 1.0,
    value_coef: float = 0.5,
    value_clip: float | None = 0.2,
    critic_learning_rate: float | None = None,
    whiten: bool = True,
    num_epochs: int = 2,
    num_minibatches: int = 2,
    **options,
) -> Algorithm:
    """Truncated PPO (Fan et al. 2025, arXiv 2506.15050): PPO on partial rollouts, with
    advantages from Extended GAE over each generation window (``egae_advantage``) and a value
    head trained on finished responses only (``finished_value_loss``).

        Â_t = EGAE_{γ,λ}(t)   (whitened),   G_t = γ^{L−1−t} R on finished rows
        L   = agg[ max(−Â_t ρ_t, −Â_t clip(ρ_t, 1−ε, 1+ε)) (dual clip c for Â_t < 0) + β KL_t − c_H H_t ]
              + c_v · ½ token-mean over finished rows of max((V_t − G_t)², (clip(V_t, V_old ± ε_v) − G_t)²)

    The method proper collects with ``collectors.partial_groups(window=W, values=True)``: each
    step trains the policy on the W-token windows just drawn (``mask_bt``). ρ_t = π_θ/π_old with
    π_old = π_{θ_s} recomputed by the trainer over the whole prefix: the window's tokens were all
    drawn by the current policy θ_s, so ρ starts at 1; the sampler's log-probs
    (``behavior_logp_bt``) differ from π_old only through the keys/values of earlier windows,
    cached by earlier policies (``offpolicy/mismatch_*`` measures it). ``window`` here must then
    be None. On complete rows (any other collector) ``window`` W emulates the windows
    (``egae_advantage``) and ``window=None`` is PPO with decoupled value targets (with
    ``value_lambda = lambda_`` it is ``ppo``).

    The paper optimizes the policy and the value model independently. ``critic_learning_rate``
    (None: off) does so with the value head (``policy_gradient.separate_critic``): its loss is
    computed on the trunk's hidden states under stop_gradient and trains the head alone, with its
    own AdamW at that rate, so no critic update moves the policy. The critic reads the policy's
    features rather than being a model of its own (the paper's): it costs no second forward pass,
    and it is as good as those features.

    Defaults are ``polrl.algorithms.ppo``'s (verl's PPO for LLMs: γ = 1, λ = 0.95, ε = 0.2,
    dual clip 3, value clip 0.2, ``token_mean``) plus Monte-Carlo value targets (λ_v = 1). The
    paper's window length and λ values were not reachable (INFERRED, see ``egae_advantage``).
    The model needs a value head (``"values"``; the builder adds it).

    Other keywords: see ``pg_algorithm`` (β = 0, k3, no entropy bonus, ``token_mean``), all but
    ``kl_in`` and ``kl_target`` (a KL in the reward would need its return-to-go across windows).
    ``correction`` weighs each window's tokens by ρ = π_old/μ (``polrl.correction``): on partial
    rollouts μ, the sampler's log-prob, differs from π_old through the earlier windows' keys and
    values, cached by earlier policies.
    """
    check_options("tppo", options, without=("kl_in", "kl_target"))
    return separate_critic(critic_learning_rate, options, pg_algorithm(
        [egae_advantage(window=window, gamma=gamma, lambda_=lambda_, value_lambda=value_lambda)],
        objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip),
        finished_value_loss(coef=value_coef, clip=value_clip, detached=critic_learning_rate is not None),
        learning_rate=learning_rate, num_epochs=num_epochs, num_minibatches=num_minibatches, whiten=whiten,
        **options,
    ))
