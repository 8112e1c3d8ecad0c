"""Digi-Q: a Q function on a frozen model's features, and best-of-N policy extraction.

"Digi-Q: Learning Q-Value Functions for Training Device-Control Agents" (arXiv 2502.15760). The
data are the behaviour policy's transitions (s, a, r, s′, done) with N candidate actions
a^0 … a^{N−1} per state (a^0 = the behaviour's own action) and the frozen model's features h(s),
h(s, a^n) (``polrl.collectors.step_candidates``; h(s′) = h(s, a^0)). The critic is two Q heads
and two V heads, small MLPs on the frozen features (one hidden ReLU layer of width H):

    Q_i(s, a) = f_{Q_i}(h(s, a)),   V_i(s) = f_{V_i}(h(s)),   i = 1, 2,

with a target copy f̄ moved by a soft update after every critic step,

    θ̄ ← (1 − τ) θ̄ + τ θ                                               (τ = 0.1)

Critic losses, averaged over the batch's states S (rows whose state exists), summed over the four
heads, by ``critic_target``:

  "bellman" (TD; the paper's choice): each twin regresses on its own target head,
      L_{Q_i} = mean_S (Q_i(s, a^0) − [r + γ(1 − done) V̄_i(s′)])²,       (γ = 0.95)
      L_{V_i} = mean_S (V_i(s) − Q̄_i(s, a^0))²;
  "mc" (Monte-Carlo classification): every head is a logit z, its value σ(z), trained by binary
      cross-entropy on y = 1[the trajectory's return > 0] (with one terminal reward, the sign of
      the discounted Monte-Carlo return is the sign of the reward, whatever γ),
      L = mean_S softplus(z) − y·z.

Actor ("best-of-N" extraction), with the critic after this batch's critic steps:

    A_n = max(Q_1, Q_2)(s, a^n) − max(V_1, V_2)(s)          (values σ(z) under "mc")
    n* = argmax_n A_n  (the first on ties: the behaviour's action wins a tie)
    w(s) = 1[clip(A_{n*}, 0, 1) > thr]                         (thr = 0.10)
    L_actor = −(1/|S|) Σ_{s ∈ S} w(s) · log π_θ(a^{n*} | s),   log π_θ(a | s) = Σ_{t ∈ a} log π_θ(a_t | s, a_{<t}).

The clip of A to [0, 1] is the authors' code's (no sigmoid is applied to A; the sigmoid is the
"mc" heads' probability); for 0 ≤ thr < 1 the weight is exactly 1[A_{n*} > thr]. The denominator
counts every state, weighted or not, as the code's mean over its batch. Prepare rewrites each
row's response, mask and behaviour log-probs to its chosen candidate (``aux["bc_weight_b"]`` = w),
so the update's scoring forward scores a^{n*}.

Where the critic lives: it is trained on the collected batch once per step, outside the policy's
gradient — ``Algorithm.prepare``'s contract — so its heads, their target copies and their Adam
state are the prepare transform's state (``PolicyState.prepare_state``), checkpointed with the
phase and restored on resume; the collector only gathers data, and the frozen feature model is
the phase's reference, never copied.

``actor="successful_behaviour"`` is the paper's baseline without a critic, filtered behaviour
cloning (rejection-sampling fine-tuning): w(s) = 1[the trajectory's return > 0] on the
behaviour's own action a^0; the critic still trains, for its diagnostics, and is not read.

Not carried: the paper first fine-tunes its vision-language model's representation on the offline
transitions (an auxiliary objective on which actions change the device's state) and then freezes
it; here the frozen model is the phase's reference as it is (the SFT warm start).

INFERRED (the paper and its code leave them open, or they do not carry over): the critic MLPs
have one hidden layer of ``critic_hidden`` units and are initialised from ``critic_seed``
(normal / √fan-in weights, zero biases), the "bellman" heads are regressions (squared error; the
0/1 reward keeps their targets in [0, 1]); the critic takes ``critic_steps`` full-batch Adam steps
per collected batch (no gradient clip), each followed by the soft update (the code updates the
target once per critic epoch, also under "mc", where nothing reads it); ``critic_warmup_steps``
trains the critic alone (w = 0) for the phase's first steps, as the paper trains its critic
before extracting the actor.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from polrl.algorithms.preference import pair_algorithm
from polrl.collectors.step_candidates import (ACTION_FEATURE, CANDIDATE_LOGP, CANDIDATE_MASK, CANDIDATES, OUTCOME,
                                              STATE_FEATURE, STATE_VALID, STEP_DONE, STEP_REWARD)
from polrl.core import Algorithm, Batch, Transform, named_chain, stateless

CRITIC_TARGETS = ("bellman", "mc")
ACTORS = ("best_of_n", "successful_behaviour")
HEADS = ("q1", "q2", "v1", "v2")
ADVANTAGE, WEIGHT = "advantage_bn", "bc_weight_b"
PROVIDER = "the step_candidates collector"


def init_critic(key, feature_dim: int, hidden: int) -> dict:
    """The four heads (``HEADS``), each {w1 [D, H], b1 [H], w2 [H], b2 []}: weights normal / √fan-in,
    zero biases, one key per head."""
    def head(k):
        k1, k2 = jax.random.split(k)
        return {"w1": jax.random.normal(k1, (feature_dim, hidden)) / jnp.sqrt(feature_dim), "b1": jnp.zeros((hidden,)),
                "w2": jax.random.normal(k2, (hidden,)) / jnp.sqrt(hidden), "b2": jnp.zeros(())}

    return {name: head(k) for name, k in zip(HEADS, jax.random.split(key, len(HEADS)))}


def head_output(head: dict, x):
    """relu(x W1 + b1) · w2 + b2 over the last axis of ``x`` (the raw output: a value or a logit)."""
    return jax.nn.relu(x @ head["w1"] + head["b1"]) @ head["w2"] + head["b2"]


def critic_outputs(critic: dict, state_bd, action_bnd) -> dict:
    """Raw outputs of the four heads: q1, q2 [B, N] on h(s, a^n), v1, v2 [B] on h(s)."""
    return {"q1": head_output(critic["q1"], action_bnd), "q2": head_output(critic["q2"], action_bnd),
            "v1": head_output(critic["v1"], state_bd), "v2": head_output(critic["v2"], state_bd)}


def as_values(outputs: dict, critic_target: str) -> dict:
    """The heads' values: the raw outputs under "bellman", σ(logit) under "mc"."""
    return outputs if critic_target == "bellman" else jax.tree.map(jax.nn.sigmoid, outputs)


def advantages(values: dict):
    """[B, N]: A_n = max(Q_1, Q_2)(s, a^n) − max(V_1, V_2)(s)."""
    return jnp.maximum(values["q1"], values["q2"]) - jnp.maximum(values["v1"], values["v2"])[:, None]


def td_target(reward, done, next_value, gamma: float):
    """r + γ (1 − done) V(s′)."""
    return reward + gamma * (1.0 - done) * next_value


def soft_update(target, online, tau: float):
    """θ̄ ← (1 − τ) θ̄ + τ θ, leaf by leaf."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def masked_mean(x, valid):
    return (x * valid).sum() / jnp.maximum(valid.sum(), 1.0)


def critic_losses(critic: dict, target: dict, data: dict, *, critic_target: str, gamma: float) -> dict:
    """{q1, q2, v1, v2}: each head's loss over the states (module docstring). ``data`` holds the
    collector's ``aux`` arrays (features, step reward, done, validity, outcome)."""
    state, action, valid = data[STATE_FEATURE], data[ACTION_FEATURE], data[STATE_VALID]
    out = critic_outputs(critic, state, action[:, :1])
    if critic_target == "bellman":
        tgt = jax.lax.stop_gradient(critic_outputs(target, action[:, 0], action[:, :1]))  # V̄(s′), s′ features = h(s, a^0)
        now = jax.lax.stop_gradient(critic_outputs(target, state, action[:, :1]))          # Q̄(s, a^0)
        losses = {}
        for i in ("1", "2"):
            y_q = td_target(data[STEP_REWARD], data[STEP_DONE], tgt["v" + i], gamma)
            losses["q" + i] = masked_mean((out["q" + i][:, 0] - y_q) ** 2, valid)
            losses["v" + i] = masked_mean((out["v" + i] - now["q" + i][:, 0]) ** 2, valid)
        return losses
    label = (data[OUTCOME] > 0).astype(state.dtype)
    bce = lambda z: masked_mean(jax.nn.softplus(z) - label * z, valid)
    return {"q1": bce(out["q1"][:, 0]), "q2": bce(out["q2"][:, 0]), "v1": bce(out["v1"]), "v2": bce(out["v2"])}


def best_of_n(advantage_bn, valid_b, threshold: float):
    """(n* [B], A_{n*} [B], w [B]): the first arg-max candidate, its advantage, and
    w = 1[clip(A_{n*}, 0, 1) > thr] on the states that exist."""
    index = jnp.argmax(advantage_bn, axis=1)
    best = jnp.take_along_axis(advantage_bn, index[:, None], axis=1)[:, 0]
    weight = (jnp.clip(best, 0.0, 1.0) > threshold).astype(advantage_bn.dtype) * valid_b
    return index, best, weight


def filtered_bc_loss(logp_bt, mask_bt, weight_b, valid_b):
    """−(1/|S|) Σ_b w_b Σ_t m_bt log π(y_bt), |S| = Σ_b valid_b (at least 1)."""
    return -(weight_b * (logp_bt * mask_bt).sum(axis=1)).sum() / jnp.maximum(valid_b.sum(), 1.0)


def critic_update(*, critic_target: str, gamma: float, tau: float, learning_rate: float, steps: int, hidden: int,
                  seed: int) -> Transform:
    """Prepare transform: ``steps`` Adam steps of the critic on the batch's transitions (each
    followed by the soft target update), then ``aux["advantage_bn"]`` = A of every candidate under
    the updated critic. State: {critic, target, opt}. Logs ``critic/q_loss`` and ``critic/v_loss``
    (the twins' mean loss on the batch before the critic trains on it: fresh transitions),
    ``critic/q_mean`` and ``critic/v_mean`` (the behaviour action's max-twin Q and the state's
    max-twin V after the update, over the states)."""
    opt = optax.adam(learning_rate)

    def init(example=None):
        if example is None or STATE_FEATURE not in example.aux:
            raise ValueError("digi_q: the critic's width comes from the collector's example; collect with "
                             "step_candidates (config.collector = 'step_candidates')")
        critic = init_critic(jax.random.key(seed), example.aux[STATE_FEATURE].shape[-1], hidden)
        return {"critic": critic, "target": jax.tree.map(jnp.copy, critic), "opt": opt.init(critic)}

    def apply(batch: Batch, state, **extra):
        del extra
        batch.require_aux(STATE_FEATURE, ACTION_FEATURE, STEP_REWARD, STEP_DONE, STATE_VALID, OUTCOME,
                          by="digi_q's critic", provider=PROVIDER)
        data = batch.aux

        def loss(critic, target):
            parts = critic_losses(critic, target, data, critic_target=critic_target, gamma=gamma)
            return sum(parts.values()), parts

        def critic_step(carry, _):
            critic, target, opt_state = carry
            (_, parts), grads = jax.value_and_grad(loss, has_aux=True)(critic, target)
            updates, opt_state = opt.update(grads, opt_state, critic)
            critic = optax.apply_updates(critic, updates)
            return (critic, soft_update(target, critic, tau), opt_state), parts

        (critic, target, opt_state), parts = jax.lax.scan(
            critic_step, (state["critic"], state["target"], state["opt"]), None, length=steps)
        values = as_values(critic_outputs(critic, data[STATE_FEATURE], data[ACTION_FEATURE]), critic_target)
        valid = data[STATE_VALID]
        first = jax.tree.map(lambda x: x[0], parts)
        batch = batch.replace(aux={**data, ADVANTAGE: advantages(values)}).add_metrics(**{
            "critic/q_loss": (first["q1"] + first["q2"]) / 2, "critic/v_loss": (first["v1"] + first["v2"]) / 2,
            "critic/q_mean": masked_mean(jnp.maximum(values["q1"], values["q2"])[:, 0], valid),
            "critic/v_mean": masked_mean(jnp.maximum(values["v1"], values["v2"]), valid)})
        return batch, {"critic": critic, "target": target, "opt": opt_state}

    return Transform(init, apply)


def best_of_n_extraction(*, threshold: float, warmup_steps: int) -> Transform:
    """Prepare transform: each row becomes its state's best candidate a^{n*} (response, mask and
    behaviour log-probs of ``aux["candidate_*"]``), ``aux["bc_weight_b"]`` = w (0 before step
    ``warmup_steps``). Logs ``actor/weight_fraction`` (states with w = 1), ``actor/behaviour_chosen``
    (states whose n* = 0) and ``actor/best_advantage`` (mean A_{n*}), over the states."""

    def fn(batch: Batch, *, step) -> Batch:
        batch.require_aux(ADVANTAGE, CANDIDATES, CANDIDATE_MASK, CANDIDATE_LOGP, STATE_VALID,
                          by="best_of_n_extraction", provider=f"{PROVIDER} and digi_q's critic_update")
        valid = batch.aux[STATE_VALID]
        index, best, weight = best_of_n(batch.aux[ADVANTAGE], valid, threshold)
        weight = weight * (step >= warmup_steps)
        pick = lambda x: jnp.take_along_axis(x, index[:, None, None], axis=1)[:, 0]
        batch = batch.replace(response_bt=pick(batch.aux[CANDIDATES]), mask_bt=pick(batch.aux[CANDIDATE_MASK]),
                              behavior_logp_bt=pick(batch.aux[CANDIDATE_LOGP]), aux={**batch.aux, WEIGHT: weight})
        return batch.add_metrics(**{"actor/weight_fraction": masked_mean(weight, valid),
                                    "actor/behaviour_chosen": masked_mean((index == 0).astype(valid.dtype), valid),
                                    "actor/best_advantage": masked_mean(best, valid)})

    return stateless(fn)


def successful_behaviour() -> Transform:
    """Prepare transform: the behaviour's own action, ``aux["bc_weight_b"]`` = 1[return > 0] on the
    states that exist (filtered behaviour cloning, no critic). Logs ``actor/weight_fraction``."""

    def fn(batch: Batch) -> Batch:
        batch.require_aux(OUTCOME, STATE_VALID, by="successful_behaviour", provider=PROVIDER)
        valid = batch.aux[STATE_VALID]
        weight = (batch.aux[OUTCOME] > 0).astype(valid.dtype) * valid
        return batch.replace(aux={**batch.aux, WEIGHT: weight}).add_metrics(
            **{"actor/weight_fraction": masked_mean(weight, valid)})

    return stateless(fn)


def filtered_bc() -> Transform:
    """Objective: loss ``"filtered_bc"`` = ``filtered_bc_loss`` of the scored rows with
    ``aux["bc_weight_b"]``; logs ``bc_weighted_states`` (states with w = 1 in the minibatch)."""

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", by="filtered_bc")
        batch.require_aux(WEIGHT, STATE_VALID, by="filtered_bc", provider="digi_q's prepare")
        loss = filtered_bc_loss(batch.logp_bt, batch.mask_bt, batch.aux[WEIGHT], batch.aux[STATE_VALID])
        return batch.add_loss("filtered_bc", loss).add_metrics(bc_weighted_states=batch.aux[WEIGHT].sum())

    return stateless(fn)


def digi_q(*, critic_target: str = "bellman", gamma: float = 0.95, tau: float = 0.1, threshold: float = 0.1,
           actor: str = "best_of_n", critic_learning_rate: float = 1e-3, critic_steps: int = 1,
           critic_hidden: int = 64, critic_seed: int = 0, critic_warmup_steps: int = 0, **options) -> Algorithm:
    """Digi-Q (module docstring): the critic on the frozen reference's features of the
    ``step_candidates`` collector's transitions, trained in prepare, and filtered behaviour
    cloning of the best of N candidates (``actor="best_of_n"``) or of the behaviour's successful
    actions (``actor="successful_behaviour"``, the baseline without a critic). Takes the pair
    nouns' optimization keywords for the policy (AdamW, lr 1e-4, …)."""
    if critic_target not in CRITIC_TARGETS:
        raise ValueError(f"digi_q: critic_target={critic_target!r}; use one of {CRITIC_TARGETS}")
    if actor not in ACTORS:
        raise ValueError(f"digi_q: actor={actor!r}; use one of {ACTORS}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"digi_q: gamma={gamma!r} must lie in [0, 1]")
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"digi_q: tau={tau!r} must lie in (0, 1] (1: the target copies the critic)")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"digi_q: threshold={threshold!r} must lie in [0, 1) (A is clipped to [0, 1] first)")
    for field, value, low in (("critic_steps", critic_steps, 1), ("critic_hidden", critic_hidden, 1),
                              ("critic_seed", critic_seed, 0), ("critic_warmup_steps", critic_warmup_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"digi_q: {field}={value!r} must be an int >= {low}")
    if not critic_learning_rate > 0:
        raise ValueError(f"digi_q: critic_learning_rate={critic_learning_rate!r} must be > 0")
    critic = critic_update(critic_target=critic_target, gamma=gamma, tau=tau, learning_rate=critic_learning_rate,
                           steps=critic_steps, hidden=critic_hidden, seed=critic_seed)
    extraction = (best_of_n_extraction(threshold=threshold, warmup_steps=critic_warmup_steps)
                  if actor == "best_of_n" else successful_behaviour())
    return pair_algorithm("digi_q", filtered_bc(), options)._replace(
        prepare=named_chain(("critic", critic), ("actor", extraction)))
