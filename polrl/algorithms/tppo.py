"""T-PPO: Truncated PPO with Extended GAE (Fan et al. 2025, ByteDance Seed, arXiv 2506.15050)."""
from __future__ import annotations

import jax.numpy as jnp

from polrl import objectives, ops
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless


def egae_advantage(
    *, window: int | None, gamma: float = 1.0, lambda_: float = 0.95, value_lambda: float = 1.0
) -> Transform:
    """Extended GAE over generation windows, and Monte-Carlo value targets (T-PPO).

    T-PPO generates responses in windows of W tokens; a response still unfinished at the end
    of a window is trained on at once, its advantages bootstrapped from the value of the state
    where the window stops. So the GAE sum of a token stops at the end of its window:

        δ_t = r_t + γ V_{t+1} − V_t,     r_t = R·[t = last valid token]
        Â_t = Σ_{k=0}^{e(t)−t} (γλ)^k δ_{t+k},   e(t) = the last position of t's window
                                                          (or the last valid token)

    i.e. ``ops.gae_bt`` with λ_t = λ·[(t+1) mod W ≠ 0]: the (γλ) chain is cut after every
    window end while δ there still bootstraps from V_{t+1}. The value targets use their own
    λ (``value_lambda``; 1 = Monte-Carlo returns G_t = A_t + V_t of the finished response):

        G_t = GAE_{λ_v}(t) + V_t          (``return_bt``)

    ``window=None`` (or W ≥ T) is one window: Â is plain GAE, and with ``value_lambda = λ`` this
    transform equals ``advantages.gae_advantage``. Values are the rollout-time value head
    (``old_value_bt``; need ``"values"``).

    INFERRED (only the abstract of arXiv 2506.15050 was available): the windowed bootstrap above is this implementation's reading of "advantage
    estimation derived from incomplete responses"; the decoupled λ for the critic follows the
    same group's VC-PPO (arXiv 2503.01491). polrl's sampler generates whole responses, so the
    windows are emulated over complete rows: every token gets the advantage it would get in
    the step that generated its window, and the value head trains on finished responses only
    (all rows here), but the wall-clock saving of partial rollouts is not realised.
    """
    if window is not None and window < 1:
        raise ValueError(f"egae_advantage: window={window} must be >= 1 tokens (or None)")

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "old_value_bt", by="egae_advantage")
        mask, values = batch.mask_bt, batch.old_value_bt
        t = mask.shape[1]
        last = jnp.cumsum(mask[:, ::-1], axis=1)[:, ::-1] == 1.0  # the last valid token
        reward_bt = jnp.where(last & (mask > 0), batch.reward_b[:, None], 0.0)
        lambda_t = lambda_
        if window is not None and window < t:
            lambda_t = lambda_ * ((jnp.arange(1, t + 1) % window) != 0).astype(jnp.float32)
        adv_bt = ops.gae_bt(reward_bt, values, mask, gamma=gamma, lambda_=lambda_t)
        target_adv = ops.gae_bt(reward_bt, values, mask, gamma=gamma, lambda_=value_lambda)
        return batch.replace(adv_bt=adv_bt, return_bt=(target_adv + values) * mask)

    return stateless(fn, needs=("values",))


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
    whiten: bool = True,
    num_epochs: int = 2,
    num_minibatches: int = 2,
    **options,
) -> Algorithm:
    """Truncated PPO (Fan et al. 2025, arXiv 2506.15050): PPO whose advantages come from
    Extended GAE over generation windows of ``window`` tokens (``egae_advantage``).

        Â_t = EGAE_{γ,λ,W}(t)   (whitened),   G_t = GAE_{γ,λ_v}(t) + V_t
        L   = agg[ max(−Â_t ρ_t, −Â_t clip(ρ_t, 1−ε, 1+ε)) (dual clip c for Â_t < 0)
                   + c_v · ½ max((V_t − G_t)², (clip(V_t, V_old ± ε_v) − G_t)²) + β KL_t − c_H H_t ]

    Defaults are ``polrl.algorithms.ppo``'s (verl's PPO for LLMs: γ = 1, λ = 0.95, ε = 0.2,
    dual clip 3, value clip 0.2, ``token_mean``) plus Monte-Carlo value targets
    (λ_v = 1). ``window=None`` trains on whole responses (then T-PPO is PPO with decoupled
    value targets; with ``value_lambda = lambda_`` it is ``ppo``). The paper's window length
    and λ values were not reachable (INFERRED, see ``egae_advantage``). The model needs a
    value head (``"values"``; the builder adds it).

    Other keywords: see ``pg_algorithm`` (β = 0, k3, no entropy bonus, ``token_mean``), all but
    the prepare-side ``kl_in``, ``kl_target``, ``correction`` and ``correction_threshold``.
    """
    check_options("tppo", options, without=REWARD_SIDE_OPTIONS)
    return pg_algorithm(
        [egae_advantage(window=window, gamma=gamma, lambda_=lambda_, value_lambda=value_lambda)],
        objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip),
        objectives.value_loss(coef=value_coef, clip=value_clip),
        learning_rate=learning_rate, num_epochs=num_epochs, num_minibatches=num_minibatches, whiten=whiten,
        **options,
    )
