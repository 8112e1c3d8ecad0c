"""Control algorithm nouns: ``polrl.core.Algorithm``s built from the shared transforms.

The same factories as the LLM nouns (``polrl.objectives.clipped_policy_gradient``,
``value_loss``, ``entropy_bonus``, ``aggregate``, ``polrl.advantages.whiten_advantage``,
``polrl.mirror_descent.mirror_descent_kl``) and ``polrl.ops.gae`` for the advantages; only the
prepare transform (per-step GAE over environment streams) and the optimizer are control's own.

Every hyper-parameter may be a traced scalar (the trainer builds the noun inside the jitted run,
so a run can be vmapped over learning rates, clip ranges…); the step counts are static.
"""
from __future__ import annotations

import jax.numpy as jnp
import optax

from polrl import advantages, mirror_descent, objectives
from polrl.control.advantages import stepwise_gae
from polrl.core import Algorithm, chain


def annealed_adam(
    learning_rate, *, num_updates: int, steps_per_update: int, anneal: bool = True, max_grad_norm=0.5, eps: float = 1e-5
) -> optax.GradientTransformation:
    """``clip_by_global_norm → adam(ε = 1e-5)`` with PureJaxRL's linear annealing.

        lr_i = lr · (1 − ⌊i / steps_per_update⌋ / num_updates)   (i = optimizer step)

    so the rate is constant within one update (epochs × minibatches steps) and reaches
    lr/num_updates on the last one.
    """
    if anneal:
        def schedule(count):
            return learning_rate * (1.0 - (count // steps_per_update) / num_updates)
    else:
        schedule = learning_rate
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(schedule, eps=eps))


def ppo(
    *,
    num_updates: int,
    learning_rate=2.5e-4,
    anneal_lr: bool = True,
    clip_eps=0.2,
    ent_coef=0.01,
    vf_coef=0.5,
    max_grad_norm=0.5,
    gae_lambda=0.95,
    num_epochs: int = 4,
    num_minibatches: int = 4,
) -> Algorithm:
    """PPO for control as PureJaxRL runs it (Schulman et al. 2017, arXiv 1707.06347).

        A_t = GAE(γ_t, λ) over each environment's stream            (prepare, ``ops.gae``)
        per minibatch: Â = (A − mean A) / std A
        L   = mean[ max(−Â ρ, −Â clip(ρ, 1 ± ε)) + c_v · ½ max((V − G)², (V_old + clip(V − V_old, ±ε) − G)²)
                    − c_H · H ]

    Defaults = PureJaxRL's CartPole config: ε = 0.2 (also the value clip), c_H = 0.01, c_v = 0.5,
    λ = 0.95, 4 epochs × 4 minibatches, Adam 2.5e-4 (ε 1e-5) linearly annealed to 0 over the
    ``num_updates`` updates, global-norm clip 0.5. γ lives in the batch's discounts (the
    trainer's ``gamma``). Whitening is per minibatch (PureJaxRL; the LLM noun whitens per batch)
    and uses the unbiased std.
    """
    objective = chain(
        advantages.whiten_advantage(),
        objectives.clipped_policy_gradient(eps_low=clip_eps),
        objectives.value_loss(coef=vf_coef, clip=clip_eps),
        objectives.entropy_bonus(coef=ent_coef),
        objectives.aggregate("token_mean"),
    )
    return Algorithm(
        prepare=stepwise_gae(lambda_=gae_lambda),
        objective=objective,
        optimizer=annealed_adam(
            learning_rate, num_updates=num_updates, steps_per_update=num_epochs * num_minibatches,
            anneal=anneal_lr, max_grad_norm=max_grad_norm,
        ),
        num_epochs=num_epochs,
        num_minibatches=num_minibatches,
    )


def mdpo(
    *,
    num_updates: int,
    learning_rate=3e-4,
    anneal_lr: bool = False,
    sgd_steps: int = 10,
    ent_coef=0.0,
    vf_coef=0.5,
    vf_clip=0.2,
    max_grad_norm=0.5,
    gae_lambda=0.95,
    kl_estimator: str = "exact",
) -> Algorithm:
    """On-policy Mirror Descent Policy Optimization (Tomar et al. 2020, arXiv 2005.09814).

        A_t = GAE(γ_t, λ), whitened over the batch                  (prepare)
        L   = mean[ −ρ Â + (1/t_k) KL(π_θ(·|s) ‖ π_k(·|s)) + c_v · ½ (clipped value error) − c_H H ]
        t_k = 1 − k/K   (k = update index, K = ``num_updates``)

    no ratio clip (``clipped_policy_gradient`` with ε = ∞), exact KL of the two distributions
    (``mirror_descent_kl``; ``kl_estimator="k3"`` for the sampled estimate), m = ``sgd_steps``
    full-batch Adam steps per rollout (README example m = 10), Adam 3e-4 with ε 1e-5 and
    global-norm clip 0.5, value clip 0.2 (all as ``mdpo_on/mdpo.py``).
    INFERRED: the reference fits the value function with its own Adam (3 iterations, 3e-4); here
    the value loss is added to the same loss (c_v = 0.5) on the actor-critic's separate torsos,
    so the two parameter sets still get separate gradients.
    """
    objective = chain(
        objectives.clipped_policy_gradient(eps_low=jnp.inf),
        mirror_descent.mirror_descent_kl(mirror_descent.mdpo_step_size_inverse(num_updates), estimator=kl_estimator),
        objectives.value_loss(coef=vf_coef, clip=vf_clip),
        objectives.entropy_bonus(coef=ent_coef),
        objectives.aggregate("token_mean"),
    )
    return Algorithm(
        prepare=chain(stepwise_gae(lambda_=gae_lambda), advantages.whiten_advantage()),
        objective=objective,
        optimizer=annealed_adam(
            learning_rate, num_updates=num_updates, steps_per_update=sgd_steps,
            anneal=anneal_lr, max_grad_norm=max_grad_norm,
        ),
        num_epochs=sgd_steps,
        num_minibatches=1,
    )


__all__ = ["annealed_adam", "mdpo", "ppo"]
