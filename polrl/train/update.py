"""The one update loop: ``num_epochs`` passes of ``num_minibatches`` gradient steps over a batch.

Every trainer in polrl — the LLM trainer, the control runs (PPO, MDPO, PROPS, MAPPO/IPPO,
ReLIC, Uni-O4) — updates through ``epochs``; what differs between them is only the score
function (the forward pass that fills a minibatch's log-probs, entropies, values):

    for epoch e:                      key_e = split(key, num_epochs)[e]
      units = permutation(key_e, N/u) (in order when there is one minibatch)
      for minibatch m of N/(u·k) units:
        mb   = score(params, rows[units of m])
        loss = Σ (objective.apply(mb)).losses
        params, opt_state ← optimizer(∇loss)

Rows come in units of ``unit`` consecutive rows (an LLM rollout's groups, so objectives that
compare a group's rows see whole groups; 1 for transitions), and a minibatch's group ids are
renumbered 0 … within it. With ``skip_nonfinite`` a minibatch whose loss or gradient norm is
NaN/inf leaves params, optimizer and objective state as they were (selected with
``jnp.where``, so nothing leaves the jitted step) and counts in ``skipped_nonfinite``.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from polrl import sharding
from polrl.core import Algorithm, Batch, total_loss


def epochs(params, opt_state, objective_state, rows: Batch, *, algorithm: Algorithm,
           score: Callable[[Any, Batch], Batch], key: jax.Array, step, objective_key: jax.Array | None = None,
           unit: int = 1, skip_nonfinite: bool = True,
           metrics_fn: Callable[[Batch], dict] | None = None,
           fallback: tuple[Callable[[Any], jax.Array], Callable[[Any, Batch], Batch]] | None = None,
           ) -> tuple[Any, Any, Any, dict]:
    """The update loop (see the module docstring) over ``rows`` (a Batch, or any pytree whose
    leaves have N rows; every leaf is sliced per minibatch).

    Args:
      score: ``(params, minibatch) -> minibatch`` with the scores the objective reads.
      key: the minibatch order's key (split into one key per epoch).
      step: the ``step`` extra the objective sees.
      objective_key: when given, the objective's ``rng`` extra is ``fold_in(objective_key, i)``
        for the i-th minibatch update.
      unit: rows that stay together (groups).
      metrics_fn: extra per-minibatch metrics of the scored, objective-applied minibatch.
      fallback: ``(use, other_score)``: a minibatch for which ``use(minibatch)`` is true is scored
        by ``other_score`` instead (e.g. a packed forward whose layout the minibatch does not fit);
        the choice (``lax.cond``) is taken around the whole forward and backward pass, so neither
        branch's activations cross it.

    Returns ``(params, opt_state, objective_state, metrics)``, the metrics averaged over the
    minibatch updates: every loss, every objective metric, ``loss``, ``grad_norm`` and, with
    ``skip_nonfinite``, ``skipped_nonfinite`` (the fraction of updates skipped).
    """
    n, k = jax.tree.leaves(rows)[0].shape[0], algorithm.num_minibatches
    if n % (k * unit):
        raise ValueError(
            f"batch size {n} does not split into num_minibatches={k} minibatches of whole groups "
            f"of {unit}; make the number of groups ({n // unit}) divisible by num_minibatches"
        )
    local_group_b = jnp.arange(n // k, dtype=jnp.int32) // unit
    renumber = unit > 1 and getattr(rows, "group_b", None) is not None

    def gradient(score_fn):
        def loss_fn(params, objective_state, mb, rng):
            mb = score_fn(params, mb)
            extra = {"step": step} if rng is None else {"step": step, "rng": rng}
            mb, objective_state = algorithm.objective.apply(mb, objective_state, **extra)
            loss = total_loss(mb)
            metrics = {**mb.losses, **mb.metrics, "loss": loss, **(metrics_fn(mb) if metrics_fn else {})}
            return loss, (objective_state, metrics)

        return jax.grad(loss_fn, has_aux=True)

    grad_fn = gradient(score)
    if fallback is not None:
        use_other, other_score = fallback
        grad_other, grad_main = gradient(other_score), grad_fn
        grad_fn = lambda *args: jax.lax.cond(use_other(args[2]), grad_other, grad_main, *args)  # noqa: E731

    def minibatch_step(carry, xs):
        idx, update_index = xs
        params, opt_state, objective_state = carry
        mb = sharding.constrain_batch(jax.tree.map(lambda x: x[idx], rows))
        if renumber:
            mb = mb.replace(group_b=local_group_b)  # whole groups, renumbered 0 … n/(k·u) − 1
        rng = None if objective_key is None else jax.random.fold_in(objective_key, update_index)
        grads, (new_objective_state, metrics) = grad_fn(params, objective_state, mb, rng)
        grad_norm = optax.tree.norm(grads)
        updates, new_opt_state = algorithm.optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        new = (new_params, new_opt_state, new_objective_state)
        metrics = {**metrics, "grad_norm": grad_norm}
        if skip_nonfinite:  # a non-finite loss or gradient leaves everything as it was
            finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
            new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, carry)
            metrics["skipped_nonfinite"] = 1.0 - finite.astype(jnp.float32)
        return new, metrics

    def epoch_step(carry, xs):
        epoch_key, epoch = xs
        units = jax.random.permutation(epoch_key, n // unit) if k > 1 else jnp.arange(n // unit)
        order = (units[:, None] * unit + jnp.arange(unit)).reshape(-1)
        return jax.lax.scan(minibatch_step, carry, (order.reshape(k, n // k), epoch * k + jnp.arange(k)))

    xs = (jax.random.split(key, algorithm.num_epochs), jnp.arange(algorithm.num_epochs))
    (params, opt_state, objective_state), metrics = jax.lax.scan(
        epoch_step, (params, opt_state, objective_state), xs)
    return params, opt_state, objective_state, jax.tree.map(jnp.mean, metrics)
