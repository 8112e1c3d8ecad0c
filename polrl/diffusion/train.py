"""Training a masked-diffusion LM on arithmetic: SFT warm start on demonstrations, then RL.

Launched by ``python -m polrl.launch --config experiments/arithmetic_bgpo.py`` (``trainer =
"diffusion"``). Two phases, each a jitted step repeated:

* ``sft``: LLaDA's supervised loss on the first ``demonstrations`` train rows (prompt, answer +
  EOS fill), −(1/B) Σ_b ℓ_b / L with one drawn mask per row (ℓ of :mod:`polrl.diffusion.elbo`);
* ``rl``:  each step draws ``group_size`` responses for each of ``batch_prompts`` prompts of the
  whole train split with the unmasking sampler (``sampler_steps`` steps, temperature
  ``temperature``), rewards 1 for an exact answer (every token up to and including the answer's
  EOS) and 0 otherwise, takes GRPO's group advantages and one optimizer step on ``objective``:
  ``"bgpo"`` (the linear bound, gradient accumulated over ``num_mc`` masks) or ``"elbo_ratio"``
  (the non-linear objective, all masks in one graph); π_old = π_θ at the step (one update per
  batch), scored on the same masks. ``"seppo"`` / ``"dragon"`` (:mod:`polrl.diffusion.preference`,
  DPO losses on ELBO log-ratios, ``beta``): SePPO pairs each prompt's labelled answer with
  ``group_size`` samples of a member of a pool of ``pool_size`` earlier parameters (a snapshot every
  ``refresh_every`` steps, ``checkpoint_pool``'s schedule), the member as reference; DRAGON scores
  each prompt's ``group_size`` on-policy samples as a set against its answer (Gaussian kernel
  ``bandwidth``) and contrasts positive- and negative-credit samples, the phase's starting
  parameters as reference. Their pool / reference lives in the phase state (checkpointed).

Every ``eval_every`` steps and at the end of each phase the greedy sampler (temperature 0) answers
``eval_prompts`` held-out prompts (``eval/accuracy``). Metrics go to ``<workdir>/metrics.jsonl``;
every ``checkpoint_every`` steps and at the end of a phase ``PhaseCheckpointer`` saves the
parameters, optimizer state and the metric log's length under ``<workdir>/checkpoints/<phase>``;
a relaunch resumes each phase from its latest checkpoint (a step's data and randomness are
functions of the seed and the step alone).
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from polrl import ops
from polrl.collectors.checkpoint_pool import choose_slot, pool_schedule
from polrl.diffusion import bgpo, elbo, preference, sampler
from polrl.diffusion.model import MaskedDiffusionLM, diffusion_config, mask_id
from polrl.tasks.arithmetic import ArithmeticConfig, make_splits
from polrl.tasks.tokenizer import EOS_ID, PAD_ID, CharTokenizer
from polrl.train.checkpoint import PhaseCheckpointer

OBJECTIVES = {"bgpo": bgpo.bgpo_value_and_grad, "elbo_ratio": bgpo.elbo_ratio_value_and_grad}
PREFERENCE = ("seppo", "dragon")


def encode(examples: list[dict], tokenizer: CharTokenizer, prompt_length: int, response_length: int):
    """Left-padded prompts [N, P] (+ validity) and responses [N, L] = answer, EOS, EOS fill; answer lengths [N]."""
    prompts = np.full((len(examples), prompt_length), PAD_ID, np.int32)
    responses = np.full((len(examples), response_length), EOS_ID, np.int32)
    for i, ex in enumerate(examples):
        p, a = tokenizer.encode(ex["prompt"]), tokenizer.encode(ex["answer"])
        if len(p) > prompt_length or len(a) + 1 > response_length:
            raise ValueError(f"config.prompt_length={prompt_length} / config.response_length={response_length} are "
                             f"too short for {ex['prompt']}{ex['answer']}: raise them (the response holds the answer "
                             "and one EOS).")
        prompts[i, prompt_length - len(p):] = p
        responses[i, :len(a)] = a
    answer_len = np.array([len(ex["answer"]) for ex in examples], np.int32)
    return jnp.asarray(prompts), jnp.asarray(prompts != PAD_ID), jnp.asarray(responses), jnp.asarray(answer_len)


def exact_match(response_bl, target_bl, answer_len_b):
    """1.0 where the response equals the target at every position ≤ the answer's EOS, else 0.0."""
    upto_bl = jnp.arange(target_bl.shape[1])[None] <= answer_len_b[:, None]
    return jnp.all((response_bl == target_bl) | ~upto_bl, axis=1).astype(jnp.float32)


class Setup:
    """The model's functional form, the data and the jitted steps of one config."""

    def __init__(self, config):
        if config.objective not in (*OBJECTIVES, *PREFERENCE):
            raise ValueError(f"config.objective={config.objective!r}; use one of {sorted((*OBJECTIVES, *PREFERENCE))}.")
        if config.objective in PREFERENCE:
            check_preference(config)
        self.config = config
        tokenizer = CharTokenizer()
        task = ArithmeticConfig(**config.task.to_dict())
        splits = make_splits(task)
        self.train = encode(splits["train"], tokenizer, config.prompt_length, config.response_length)
        if not 1 <= config.demonstrations <= self.train[0].shape[0]:
            raise ValueError(f"config.demonstrations={config.demonstrations} must be in [1, task.num_train="
                             f"{self.train[0].shape[0]}]: the SFT phase trains on that many labelled train rows.")
        self.test = [x[:config.eval_prompts] for x in
                     encode(splits["test"], tokenizer, config.prompt_length, config.response_length)]
        model_config = diffusion_config(tokenizer.vocab_size, max_len=config.prompt_length + config.response_length,
                                        **config.model.to_dict())
        model = MaskedDiffusionLM(model_config, rngs=nnx.Rngs(config.seed))
        self.graphdef, self.params = nnx.split(model, nnx.Param)
        self.mask = mask_id(model_config)

    def apply(self, params, tokens, valid):
        return nnx.merge(self.graphdef, params)(tokens, valid)

    def batch(self, key, size, num_rows):
        rows = jax.random.randint(key, (size,), 0, num_rows)
        return [x[rows] for x in self.train]

    def draw(self, params, prompt, valid, key, temperature):
        c = self.config
        return sampler.unmask(functools.partial(self.apply, params), prompt, valid, key, length=c.response_length,
                              steps=c.sampler_steps, temperature=temperature, mask=self.mask)

    @functools.partial(jax.jit, static_argnums=(0, 4))
    def sft_step(self, params, opt_state, key, optimizer):
        data_key, mask_key = jax.random.split(key)
        prompt, valid, response, _ = self.batch(data_key, self.config.batch_prompts * self.config.group_size,
                                                self.config.demonstrations)

        def loss(p):
            masked, weight = elbo.draw_mask(mask_key, *response.shape)
            term = elbo.sample_term(functools.partial(self.apply, p), prompt, valid, response, masked, weight,
                                    self.mask)
            return -jnp.mean(term) / response.shape[1]

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": value}

    @functools.partial(jax.jit, static_argnums=(0, 4))
    def rl_step(self, params, opt_state, key, optimizer):
        c = self.config
        data_key, sample_key, mask_key = jax.random.split(key, 3)
        prompt, valid, target, answer_len = [jnp.repeat(x, c.group_size, axis=0)
                                             for x in self.batch(data_key, c.batch_prompts, self.train[0].shape[0])]
        response = self.draw(params, prompt, valid, sample_key, c.temperature)
        reward = exact_match(response, target, answer_len)
        group = jnp.repeat(jnp.arange(c.batch_prompts), c.group_size)
        adv = ops.group_advantages(reward, group, c.batch_prompts)
        old_kb = jax.lax.stop_gradient(elbo.elbo_samples(functools.partial(self.apply, params), prompt, valid,
                                                         response, mask_key, c.num_mc, self.mask))
        value, grads = OBJECTIVES[c.objective](self.apply, params, old_kb, prompt, valid, response, adv, mask_key,
                                               self.mask)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        metrics = {"loss": value, "reward_mean": jnp.mean(reward), "accuracy": jnp.mean(reward),
                   "elbo": jnp.mean(old_kb)}
        return optax.apply_updates(params, updates), opt_state, metrics

    def phase_state(self, name, params) -> dict:
        """The RL phase's extra state: SePPO's empty pool, DRAGON's reference (the starting parameters); else {}."""
        c = self.config
        if name != "rl" or c.objective not in PREFERENCE:
            return {}
        if c.objective == "dragon":
            return {"reference": params}
        return {"pool": {"snapshots": jax.tree.map(lambda x: jnp.zeros((c.pool_size, *x.shape), x.dtype), params),
                         "versions": jnp.full((c.pool_size,), -1, jnp.int32)}}

    @functools.partial(jax.jit, static_argnums=(0, 4))
    def preference_step(self, state, key, step, optimizer):
        """One SePPO / DRAGON step (module docstring) at RL step ``step``; (state, metrics)."""
        c = self.config
        data_key, sample_key, mask_key, choice_key = jax.random.split(key, 4)
        prompt, valid, target, answer_len = [jnp.repeat(x, c.group_size, axis=0)
                                             for x in self.batch(data_key, c.batch_prompts, self.train[0].shape[0])]
        params, extra = state["params"], {}
        if c.objective == "seppo":
            write, slot, filled = pool_schedule(step, c.pool_size, c.refresh_every)
            pool = state["pool"]
            snapshots = jax.tree.map(lambda b, p: b.at[slot].set(jnp.where(write, p, b[slot])), pool["snapshots"],
                                     params)
            versions = jnp.where(write, pool["versions"].at[slot].set(step), pool["versions"])
            member_slot = choose_slot(choice_key, filled)
            reference = jax.tree.map(lambda b: b[member_slot], snapshots)
            response = self.draw(reference, prompt, valid, sample_key, c.temperature)
            objective = lambda p: preference.seppo_loss(self.apply, p, reference, prompt, valid, target, response,
                                                        mask_key, c.num_mc, self.mask, beta=c.beta, flip=c.flip)
            extra = {"pool": {"snapshots": snapshots, "versions": versions}}
            metrics = {"pool_slot": member_slot, "pool_staleness": step - versions[member_slot]}
        else:
            reference = extra["reference"] = state["reference"]
            response = self.draw(params, prompt, valid, sample_key, c.temperature)
            credit = preference.set_credits(response, target, c.group_size, c.bandwidth)
            objective = lambda p: preference.dragon_loss(self.apply, p, reference, prompt, valid, response, credit,
                                                         mask_key, c.num_mc, self.mask, group_size=c.group_size,
                                                         beta=c.beta)
            metrics = {"credit_positive_frac": jnp.mean(credit > 0), "credit_negative_frac": jnp.mean(credit < 0)}
        (value, pref_metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, state["opt_state"], params)
        reward = exact_match(response, target, answer_len)
        metrics = {"loss": value, "reward_mean": jnp.mean(reward), "accuracy": jnp.mean(reward), **metrics,
                   **pref_metrics}
        return {"params": optax.apply_updates(params, updates), "opt_state": opt_state, **extra}, metrics

    @functools.partial(jax.jit, static_argnums=0)
    def evaluate(self, params):
        prompt, valid, target, answer_len = self.test
        response = self.draw(params, prompt, valid, jax.random.key(0), 0.0)
        return jnp.mean(exact_match(response, target, answer_len))


def check_preference(config) -> None:
    """One-line errors naming the field for SePPO's / DRAGON's options."""
    beta = config.get("beta")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < float("inf"):
        raise ValueError(f"config.beta={beta!r} must be a finite number > 0 (the DPO inverse temperature of "
                         f"objective {config.objective!r}).")
    if config.objective == "seppo":
        for name in ("pool_size", "refresh_every"):
            value = config.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"config.{name}={value!r} must be an int >= 1 (SePPO's checkpoint pool).")
        if not isinstance(config.get("flip"), bool):
            raise ValueError(f"config.flip={config.get('flip')!r} must be True (SePPO's anchor flip) or False (DPO).")
    else:
        if config.group_size < 2:
            raise ValueError(f"config.group_size={config.group_size} must be >= 2: DRAGON's leave-one-out credit "
                             "scores each prompt's samples as a set.")
        bandwidth = config.get("bandwidth")
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not 0 < bandwidth < float("inf"):
            raise ValueError(f"config.bandwidth={bandwidth!r} must be a finite number > 0 (DRAGON's kernel width).")


def _log(path: str, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate(path: str, lines: int) -> None:
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            kept = f.readlines()[:lines]
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(kept)


def run_phase(s: Setup, name: str, steps: int, learning_rate: float, params, workdir: str, first_step: int):
    """``steps`` steps of phase ``name`` from ``params`` (or its latest checkpoint); (params, summary)."""
    c = s.config
    optimizer = optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.adam(learning_rate))
    extra = s.phase_state(name, params)
    state = {"params": params, "opt_state": optimizer.init(params), **extra}
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    ckpt = PhaseCheckpointer(os.path.join(workdir, "checkpoints", name))
    start = 0
    if ckpt.latest_step() is not None:
        restored = ckpt.load(state)
        state, start = restored.state, restored.position
        if start < steps:  # later phases have logged nothing yet: drop this phase's lines after the checkpoint
            _truncate(metrics_path, restored.metrics_lines)
    step_fn = s.sft_step if name == "sft" else s.rl_step
    key = jax.random.fold_in(jax.random.key(c.seed), first_step)
    summary = {}
    for step in range(start, steps):
        if extra:
            state, metrics = s.preference_step(state, jax.random.fold_in(key, step), jnp.int32(step), optimizer)
        else:
            params, opt_state, metrics = step_fn(state["params"], state["opt_state"], jax.random.fold_in(key, step),
                                                 optimizer)
            state = {"params": params, "opt_state": opt_state}
        record = {"phase": name, "step": first_step + step + 1, **{k: float(v) for k, v in metrics.items()}}
        if (step + 1) % c.eval_every == 0 or step + 1 == steps:
            record["eval/accuracy"] = float(s.evaluate(state["params"]))
            summary = {k: record[k] for k in record if k not in ("phase", "step")}
        _log(metrics_path, record)
        if (step + 1) % c.checkpoint_every == 0 or step + 1 == steps:
            with open(metrics_path, encoding="utf-8") as f:
                lines = sum(1 for _ in f)
            ckpt.save(step + 1, state, position=step + 1, global_step=first_step + step + 1, metrics_lines=lines)
    ckpt.close()
    if not summary:  # resumed after the phase's last step
        summary = {"eval/accuracy": float(s.evaluate(state["params"]))}
    return state["params"], summary


def run(config, workdir: str) -> dict[str, Any]:
    """SFT then RL (see the module docstring); {phase: last evaluation's metrics}."""
    os.makedirs(workdir, exist_ok=True)
    s = Setup(config)
    initial = float(s.evaluate(s.params))
    params, sft = run_phase(s, "sft", config.sft_steps, config.sft_learning_rate, s.params, workdir, 0)
    params, rl = run_phase(s, "rl", config.total_steps, config.learning_rate, params, workdir, config.sft_steps)
    return {"initial": {"eval/accuracy": initial}, "sft": sft, "rl": rl}
