"""NLPO's data: G samples per prompt drawn under a top-p action mask from a delayed copy of the policy.

NLPO ("Is Reinforcement Learning (Not) for Natural Language Processing? Benchmarks, Baselines, and
Building Blocks for Natural Language Policy Optimization", Ramamurthy et al. 2022, arXiv
2210.01241, and the authors' RL4LMs code, which the details below follow) is
PPO on a masked policy. A *mask model* π_ψ, a copy of the policy refreshed every μ updates, limits
every decoding step to its top-p nucleus:

    σ = the tokens sorted by π_ψ(· | s_t), descending;   M_j = Σ_{i<j} π_ψ(σ_i | s_t)
    keep σ_j  ⇔  M_j ≤ p  or  j < k_min                   (p = ``top_mask``, k_min = ``min_tokens_to_keep``)
    π̃_θ(a | s_t) = π_θ(a | s_t) / Σ_{a' kept} π_θ(a' | s_t)   on the kept tokens, 0 elsewhere,

i.e. the masked tokens get logit −inf. The token that carries the mass past p is kept, and so is
the most likely one (M_0 = 0). π̃_θ is the policy NLPO samples from and trains: the loss's
log-probs and entropy are π̃_θ's (``polrl.algorithms.nlpo``), so a masked row is ON_POLICY.

**The mask model.** ψ is kept in the collector state (one copy of the parameters, laid out like
them; checkpointed with the rest of the state, so a resumed run masks with the same ψ): at the
step that updates θ_s (``PolicyState.step`` = s, counted from the phase's start), ψ ← θ_s when
s mod μ = 0 (μ = ``update_every``), before sampling; in between ψ stays frozen. So step s masks
with θ_{μ⌊s/μ⌋}, and μ = 1 masks with the current policy's own nucleus.

**Sampling.** Policy and mask model each prefill the prompts once and fork them into G slots;
every decoding step runs the mask model on the token just drawn (its own KV cache, through
``engine.generate``'s ``LogitsHook``), computes the nucleus from its next-token logits and sets
the policy's logits outside it to −inf before the draw (then temperature, top-k/p and min-p as
usual). The sampler's log-probs (``behavior_logp_bt``) are therefore log π̃_T of the drawn tokens.

**Rows** are ``group_samples``' (row k·G + j is sample j of prompt k; ``version_b`` = s;
``reward_b`` the task's device reward) plus

* ``aux["action_mask_btv"]`` (bool [B, T, V]): the kept tokens of every step, exactly the mask the
  sampler applied, so the loss renormalises over the set that was sampled from and the drawn token
  is always in it; positions past a row's end hold every token (no mask). Stored densely: B·T·V
  bytes, a few hundred KB at the 64-entry character vocabulary. Recomputing the mask in the update
  from the mask model's logits (storing ψ's threshold per position) would save the array but cost
  a forward of ψ in every update, and a scoring forward rounds differently from the cached decode,
  so a token at the nucleus boundary could be kept by one and dropped by the other; with a real
  vocabulary the mask would be stored as packed bits (V / 8 bytes per position), not carried here.
* ``old_logp_bt``: π_old = log π̃_θ_s of the rows' tokens, from one scoring forward at the
  sampling parameters (the trainer's ``score``, full logits, masked): the trainer's recomputed
  π_old of every other noun is unmasked, so the collector provides the masked one and the trainer
  keeps it (``steps.prepare``), as the authors' code recomputes the rollout's masked log-probs.
  Under ``staleness`` (``collectors.stale``) this is the stale policy's masked π_old with either
  ``staleness_old_policy``: a recomputation at θ_s would be unmasked.

Metrics: ``rollout_metrics``, and over the response tokens: ``mask/kept_tokens`` (mean size of the
kept set), ``mask/kept_mass`` (π_θ's mass on it, at the sampling temperature),
``mask/argmax_masked_frac`` (positions where π_θ's most likely token is masked: where the unmasked
greedy evaluation decodes what the masked policy cannot), ``mask/age`` (s − the refresh step).

Evaluation: the trainer's held-out evaluation decodes the policy π_θ without the mask (greedy,
and ``eval.samples`` samples), so it measures the trained policy itself; the authors' evaluation
decodes through the mask model's nucleus as well. ``mask/argmax_masked_frac`` says how often the
two greedy decodes can differ on training rows.

Taken from the authors' code: the nucleus is computed from the mask model's untempered logits
(softmax at temperature 1) and the EOS token is always kept (their "special ids"). INFERRED: tokens
tied in probability with the last kept one are all kept (the mask is a function of π_ψ, not of a
sort order); the refresh happens before the step's sampling at s ≡ 0 mod μ (the authors copy the
policy after the rollout of every μ-th iteration, before its update, i.e. one update earlier);
p = 1 keeps every token exactly (no cumulative sum is compared). ``min_tokens_to_keep`` = 100 of
GPT-2's 50 257 tokens is, in proportion, less than one of 64 tokens; the default here is 1 (the
nucleus alone) and a config picks its own.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from polrl import ops, sharding
from polrl.collectors.context import Context, group_rows, policy_template, repeat_rows, shapes
from polrl.collectors.group_samples import device_reward, rollout_metrics
from polrl.collectors.stale import check_template, snapshot_buffer
from polrl.core import Collector
from polrl.rollout import SampleOutput, SamplingConfig, engine
from polrl.train.steps import score

ACTION_MASK = "action_mask_btv"


def check_options(top_mask, min_tokens_to_keep, update_every) -> None:
    """One-line errors naming the keyword for an invalid mask."""
    if isinstance(top_mask, bool) or not isinstance(top_mask, (int, float)) or not 0.0 < top_mask <= 1.0:
        raise ValueError(f"masked_groups: top_mask={top_mask!r} must be in (0, 1] (the mask model's nucleus mass; "
                         f"1 keeps every token)")
    if isinstance(min_tokens_to_keep, bool) or not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
        raise ValueError(f"masked_groups: min_tokens_to_keep={min_tokens_to_keep!r} must be an int >= 1")
    if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
        raise ValueError(f"masked_groups: update_every={update_every!r} must be an int >= 1 (updates between "
                         f"refreshes of the mask model)")


def nucleus_mask(logits_bv: jax.Array, top_mask: float, min_tokens_to_keep: int = 1,
                 always_keep: int | None = None) -> jax.Array:
    """bool [B, V]: the tokens of the top-p nucleus of softmax(logits) (the module's rule).

    Token σ_j (rank j, descending) is kept iff the mass before it M_j ≤ ``top_mask`` or j <
    ``min_tokens_to_keep``; every token tied with the least likely kept one is kept too.
    ``top_mask`` ≥ 1 keeps every token. ``always_keep``: a token id kept whatever its rank (EOS).
    """
    if top_mask >= 1.0:
        return jnp.ones(logits_bv.shape, bool)
    sorted_bv = -jnp.sort(-logits_bv, axis=-1)
    probs_bv = jax.nn.softmax(sorted_bv, axis=-1)
    mass_before_bv = jnp.cumsum(probs_bv, axis=-1) - probs_bv
    rank_v = jnp.arange(logits_bv.shape[-1])
    kept_bv = (mass_before_bv <= top_mask) | (rank_v < min_tokens_to_keep)
    threshold_b1 = jnp.min(jnp.where(kept_bv, sorted_bv, jnp.inf), axis=-1, keepdims=True)
    keep_bv = logits_bv >= threshold_b1
    if always_keep is not None and 0 <= always_keep < logits_bv.shape[-1]:
        keep_bv = keep_bv.at[:, always_keep].set(True)
    return keep_bv


def masked_sample(graphdef, params, mask_params, prompt_bp, prompt_valid_bp, rng, config: SamplingConfig,
                  num_samples: int, top_mask: float, min_tokens_to_keep: int) -> tuple[SampleOutput, jax.Array]:
    """G = ``num_samples`` samples per prompt from the policy ``params`` under the nucleus mask of
    the model ``mask_params`` (same structure) at every step; rows in ``jnp.repeat`` order.
    Returns the samples and the applied mask, bool [B·G, N, V] (every token where a row drew none)."""
    b, p = prompt_bp.shape
    n = config.max_new_tokens
    model = nnx.merge(graphdef, sharding.reshard_for_rollout(params))
    mask_model = nnx.merge(graphdef, sharding.reshard_for_rollout(mask_params))
    prompt_bp, prompt_valid_bp = sharding.constrain_batch((prompt_bp, prompt_valid_bp), rollout=True)

    def prefilled(m):
        slots = engine.extend(m, engine.init_slots(m, b, p + n), prompt_bp, prompt_valid_bp)
        return engine.repeat(slots, num_samples) if num_samples > 1 else slots

    def apply(carry, i, token_s, drew_s, logits_sv):
        mask_slots, keep_snv = carry
        mask_slots = engine.extend(mask_model, mask_slots, token_s[:, None], drew_s[:, None])
        keep_sv = nucleus_mask(mask_model.logits(mask_slots.hidden_sd), top_mask, min_tokens_to_keep, config.eos_id)
        zero = jnp.zeros_like(i)
        keep_snv = jax.lax.dynamic_update_slice(keep_snv, keep_sv[:, None], (zero, i, zero))
        return jnp.where(keep_sv, logits_sv, -jnp.inf), (mask_slots, keep_snv)

    slots = prefilled(model)
    vocab = model.config.vocab_size
    hook = engine.LogitsHook(apply, (prefilled(mask_model), jnp.zeros((slots.num_slots, n, vocab), bool)))
    out, _ = engine.generate(model, slots, rng, config, commit_last=False, logits_hook=hook)
    keep_snv = out.hook_carry[1] | (out.mask_sn == 0)[..., None]
    return SampleOutput(response_bt=out.tokens_sn, logp_bt=out.logp_sn, mask_bt=out.mask_sn,
                        length_b=out.length_s), keep_snv


def masked_scores(logits_btv: jax.Array, keep_btv: jax.Array, response_bt: jax.Array) -> dict:
    """π̃'s log-prob of the rows' tokens and entropy from logits (already divided by the
    temperature) and the kept tokens: logits_y − logsumexp over the kept set."""
    masked = jnp.where(keep_btv, logits_btv, -jnp.inf)
    return {"logp_bt": ops.log_softmax_at(masked, response_bt), "entropy_bt": ops.entropy_from_logits(masked)}


def mask_metrics(logits_btv, keep_btv, mask_bt, age) -> dict:
    """The module's ``mask/…`` metrics over the response tokens (``mask_bt``)."""
    kept_mass = jnp.exp(jax.nn.logsumexp(jnp.where(keep_btv, logits_btv, -jnp.inf), axis=-1)
                        - jax.nn.logsumexp(logits_btv, axis=-1))
    top_bt = jnp.argmax(logits_btv, axis=-1)
    top_masked = ~jnp.take_along_axis(keep_btv, top_bt[..., None], axis=-1)[..., 0]
    f32 = lambda x: x.astype(jnp.float32)
    return {"mask/kept_tokens": f32(ops.masked_mean(keep_btv.sum(-1).astype(mask_bt.dtype), mask_bt)),
            "mask/kept_mass": f32(ops.masked_mean(kept_mass, mask_bt)),
            "mask/argmax_masked_frac": f32(ops.masked_mean(top_masked.astype(mask_bt.dtype), mask_bt)),
            "mask/age": jnp.asarray(age, jnp.float32)}


def masked_groups(ctx: Context, *, top_mask: float = 0.9, min_tokens_to_keep: int = 1, update_every: int = 5,
                  group_size: int | None = None) -> Collector:
    """NLPO's data (``config.collector = "masked_groups"``; see the module docstring): G samples
    per prompt (G = ``group_size``, default the run's ``rollout.group_size``) from the policy under
    the top-``top_mask`` nucleus (at least ``min_tokens_to_keep`` tokens, EOS always) of a mask
    model refreshed to the policy every ``update_every`` steps; the rows carry the applied mask
    (``aux["action_mask_btv"]``) and the masked π_old (``old_logp_bt``). A device reward is needed
    (the task's verifier runs inside the compiled step)."""
    check_options(top_mask, min_tokens_to_keep, update_every)
    g = ctx.group_size if group_size is None else group_size
    if g < 1:
        raise ValueError(f"masked_groups: group_size={g} must be >= 1")
    if ctx.task.device_reward is None:
        raise ValueError(f"masked_groups: task {ctx.task.name!r} has only a host reward; the mask is applied inside "
                         f"the compiled step, so use a task with a device reward")
    template = policy_template(ctx, "masked_groups")
    sampling = ctx.sampling

    def init(prompts):
        return {"mask_params": snapshot_buffer(template, 1)}

    def collect(cstate, state, data, rng):
        check_template(state.params, template, "masked_groups")
        step = jnp.asarray(state.step, jnp.int32)
        leaves, treedef = jax.tree.flatten(state.params)
        stored, buf_def = jax.tree.flatten(cstate["mask_params"])
        stored = jax.lax.cond(step % update_every == 0,
                              lambda: [p[None].astype(b.dtype) for p, b in zip(leaves, stored)], lambda: stored)
        mask_params = jax.tree.unflatten(treedef, [b[0] for b in stored])
        out, keep_btv = masked_sample(ctx.graphdef, state.params, mask_params, data["prompt_bp"],
                                      data["prompt_valid_bp"], rng, sampling, g, top_mask, min_tokens_to_keep)
        batch = group_rows(data, out.response_bt, out.mask_bt, out.logp_bt, g, step,
                           aux={ACTION_MASK: keep_btv})
        logits = score(ctx.graphdef, state.params, batch, temperature=sampling.scoring_temperature,
                       full_logits=True)["logits_btv"]
        logits = jax.lax.stop_gradient(logits)
        old_logp = masked_scores(logits, keep_btv, batch.response_bt)["logp_bt"]
        answers = repeat_rows(data["answer_ba"], g), repeat_rows(data["answer_valid_ba"], g)
        reward = device_reward(ctx, batch.response_bt, batch.mask_bt, *answers)
        batch = batch.replace(reward_b=reward, old_logp_bt=old_logp.astype(jnp.float32))
        metrics = {**rollout_metrics(batch), **mask_metrics(logits, keep_btv, batch.mask_bt, step % update_every)}
        return batch, {"mask_params": jax.tree.unflatten(buf_def, stored)}, metrics

    def example(prompts):
        f32, i32 = jnp.float32, jnp.int32
        rows = shapes(prompts * g, ctx.task.max_prompt_len, sampling.max_new_tokens, g)
        vocab = jax.eval_shape(lambda params, rows: score(ctx.graphdef, params, rows, full_logits=True)["logits_btv"],
                               template, rows).shape[-1]
        return shapes(prompts * g, ctx.task.max_prompt_len, sampling.max_new_tokens, g, reward_b=f32, group_b=i32,
                      behavior_logp_bt=f32, old_logp_bt=f32, version_b=i32,
                      aux={ACTION_MASK: ((sampling.max_new_tokens, vocab), jnp.bool_)})

    return Collector(init=init, collect=collect, example=example)
