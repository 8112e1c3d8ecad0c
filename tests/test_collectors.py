"""The collector contract, for every collector and wrapper in ``polrl.collectors``: what
``collect`` returns matches ``example``, its state keeps its structure, jit == no-jit, and a
second step with new data does not retrace. Runs on a float64 tiny model, so the jitted and
eager samples cannot differ by float32 rounding."""
import dataclasses
import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, collectors, sharding
from polrl.core import Collector
from polrl.envs import DeviceEnv
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.tasks import CharTokenizer, Task, token_exact_match
from polrl.train import steps
from tiny_models import tiny_params

V, EOS, PAD, G = 8, 7, 0, 2
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                        dtype=jnp.float64, param_dtype=jnp.float64)
SAMPLING = SamplingConfig(max_new_tokens=4, eos_id=EOS, pad_id=PAD)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def _model():
    with jax.enable_x64(True):
        return tiny_params(CFG)


def _context():
    task = Task(name="tiny", tokenizer=None, max_prompt_len=3, max_answer_len=3, train=[], test=[],
                host_reward=None, device_reward=token_exact_match)
    named = {"rm": collectors.NamedModel(_reward_model()[0], value_head=True),
             "strong": collectors.NamedModel(_model()[0]), "weak": collectors.NamedModel(_model()[0])}
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _model()[1])
    return collectors.Context(graphdef=_model()[0], task=task, sampling=SAMPLING, group_size=G,
                              layout=sharding.layout_from_config(None), models=named, params_template=template)


def _frozen_models():
    """The parameters of the context's frozen models (``PolicyState.models``)."""
    with jax.enable_x64(True):
        return {"rm": _reward_model()[1], "strong": tiny_params(CFG, seed=3)[1], "weak": tiny_params(CFG, seed=2)[1]}


def _echo_step(count_k, tokens_kn, mask_kn):
    """Echoes a turn's first token, pays the number of turns played when the turn ends with EOS."""
    count_k = count_k + 1
    done_k = jnp.any(mask_kn & (tokens_kn == EOS), axis=1)
    return count_k, tokens_kn[:, :1], ~done_k[:, None], jnp.where(done_k, count_k, 0).astype(jnp.float32), done_k


_ECHO = DeviceEnv(name="echo", observation_len=1, step=_echo_step,
                  reset=lambda rows: (jnp.zeros(rows["prompt_bp"].shape[:1], jnp.int32),
                                      rows["prompt_bp"][:, -1:], rows["prompt_valid_bp"][:, -1:]))


def _wrapped(wrapper):
    return lambda ctx: wrapper(collectors.group_samples(ctx), ctx)


@functools.lru_cache(maxsize=None)
def _reward_model():
    with jax.enable_x64(True):
        return tiny_params(dataclasses.replace(CFG, value_head=True), seed=1)


def _with_steps(ctx):
    """The context's task with one-token steps (token 4 ends a step), for the step-level collectors."""
    tokenizer = types.SimpleNamespace(encode=lambda text: [4] if text == "," else [])
    return dataclasses.replace(ctx, task=dataclasses.replace(ctx.task, tokenizer=tokenizer, step_separator=","))


def _with_chars(ctx):
    """The context's task with a tokenizer of a few characters onto ids 1–5 (the judge templates)."""
    tokenizer = types.SimpleNamespace(encode=lambda text: [1 + ord(c) % 5 for c in text], eos_id=EOS)
    return dataclasses.replace(ctx, task=dataclasses.replace(ctx.task, tokenizer=tokenizer))


def _with_goals(ctx):
    """The context's task with a tokenizer for two one-token goal texts."""
    tokenizer = types.SimpleNamespace(encode=lambda text: {"[0]": [5], "[1]": [6]}[text])
    return dataclasses.replace(ctx, task=dataclasses.replace(ctx.task, tokenizer=tokenizer))


CASES = {
    "demonstrations": collectors.demonstrations,
    "group_samples": collectors.group_samples,
    "group_samples(slots)": functools.partial(collectors.group_samples, slots=3),
    "group_samples(teacher)": functools.partial(collectors.group_samples, policy="strong"),
    "preference_pairs": collectors.preference_pairs,
    "revised_pairs": collectors.revised_pairs,
    "revised_pairs(revised)": functools.partial(collectors.revised_pairs, emit="revised"),
    "with_expert_rows": _wrapped(collectors.with_expert_rows(1)),
    "dynamic_sampling": _wrapped(collectors.dynamic_sampling(2)),
    "with_greedy_baseline": _wrapped(collectors.with_greedy_baseline()),
    "with_hints": _wrapped(collectors.with_hints((0.5,))),
    "with_instruction_population": lambda ctx: _wrapped(collectors.with_instruction_population(
        ("ab", "c"), capacity=3, width=2, prune_every=1, num_proposals=1, failure_text="a", proposal_cue="b"))(
        _with_chars(ctx)),
    "hinted_groups": functools.partial(collectors.hinted_groups, hint_ratios=(0.25, 0.75)),
    "with_unsolved_labels": _wrapped(collectors.with_unsolved_labels(1)),
    "label_guided_groups": collectors.label_guided_groups,
    "masked_groups": functools.partial(collectors.masked_groups, top_mask=0.8, update_every=2),
    "with_replay": _wrapped(collectors.with_replay(capacity=4, num_replay=1)),
    "with_score_position": _wrapped(collectors.with_score_position()),
    "with_density_ratio": lambda ctx: collectors.with_density_ratio("strong", "weak", strong_prefix=[3])(
        collectors.group_samples(ctx), ctx),
    "with_reward_goals": lambda ctx: collectors.with_reward_goals(("[0]", "[1]"))(
        collectors.preference_pairs(_with_goals(ctx)), _with_goals(ctx)),
    "with_reward_model": lambda ctx: collectors.with_reward_model("rm", hidden_score=token_exact_match)(
        collectors.group_samples(ctx), ctx),
    "with_distributional_reward": _wrapped(collectors.with_distributional_reward(bandwidth=1.5)),
    "with_detectability_penalty": _wrapped(collectors.with_detectability_penalty(0.5, detector="burstiness",
                                                                                 separator_id=2)),
    "with_judge_rows": lambda ctx: _wrapped(collectors.with_judge_rows())(_with_chars(ctx)),
    "with_self_judge": lambda ctx: _wrapped(collectors.with_self_judge())(_with_chars(ctx)),
    "stale": lambda ctx: collectors.stale(2)(collectors.group_samples(ctx), ctx),
    "with_teacher_logits": _wrapped(collectors.with_teacher_logits("strong")),
    "with_student_fraction": _wrapped(collectors.with_student_fraction("strong", 0.5)),
    "with_distilled_corpus": _wrapped(collectors.with_distilled_corpus(("strong", "weak"), samples=2, keep=2,
                                                                       select_steps=1, probe_steps=1, probe_samples=1)),
    "with_multi_guidance": _wrapped(collectors.with_multi_guidance(("strong",), k=1, wrong_teachers="force")),
    "with_borrowed_reasoning": lambda ctx: _wrapped(collectors.with_borrowed_reasoning("strong", 2, 2))(
        dataclasses.replace(ctx, task=dataclasses.replace(ctx.task, tokenizer=types.SimpleNamespace(encode=lambda t: [6]),
                                                          answer_marker="#"))),
    "checkpoint_pool": lambda ctx: collectors.checkpoint_pool(ctx, pool_size=2, refresh_every=1),
    "turns": lambda ctx: collectors.turns(ctx, env=_ECHO, max_turns=2, turn_tokens=2),
    "step_labels": lambda ctx: collectors.step_labels(_with_steps(ctx), continuations=2, max_steps=2),
    "step_candidates": lambda ctx: collectors.step_candidates(_with_steps(ctx), candidates=2, max_steps=2),
    "mcts_pairs": lambda ctx: collectors.mcts_pairs(_with_steps(ctx), simulations=2, branching=2, max_depth=2,
                                                    step_tokens=2, max_pairs=2),
    "mcts_pairs(prm)": lambda ctx: collectors.mcts_pairs(_with_steps(ctx), simulations=2, branching=2, max_depth=2,
                                                         step_tokens=2, max_pairs=2, prm="rm", prefix_weight=0.5),
    "dialogue_tree": lambda ctx: collectors.dialogue_tree(dataclasses.replace(ctx, task=dataclasses.replace(ctx.task, name="target_says", tokenizer=CharTokenizer())), target="weak", max_turns=1, branch=2, width=2),
    "tree": lambda ctx: collectors.tree(ctx, segment_len=2, init_branches=1, branching=2,
                                        branch_on="uncertainty"),
    "partial_groups": lambda ctx: collectors.partial_groups(ctx, window=2),
}


def _data(seed, prompts):
    rng = np.random.default_rng(seed)
    valid = np.ones((prompts, 3), bool)
    valid[0, 0] = False
    answer_valid = np.ones((prompts, 3), bool)
    answer_valid[:, 2] = False
    return {
        "prompt_bp": jnp.asarray(np.where(valid, rng.integers(1, V - 1, (prompts, 3)), PAD), jnp.int32),
        "prompt_valid_bp": jnp.asarray(valid),
        "answer_ba": jnp.asarray(np.where(answer_valid, rng.integers(1, V - 1, (prompts, 3)), PAD), jnp.int32),
        "answer_valid_ba": jnp.asarray(answer_valid),
    }


# Host collectors (strings tokenized outside jit) have their contract checked in their own tests.
HOST_COLLECTORS = ("offline_pairs", "offline_unpaired")  # tests/test_offline_pairs.py


def test_every_exported_collector_has_a_contract_case():
    exported = {n for n in collectors.__all__ if n in dir(collectors) and n not in
                ("Context", "NamedModel", "compose", "demonstration_batch", "keep_informative_groups", "rollout_metrics",
                 "best_and_worst") + HOST_COLLECTORS}
    assert exported == {name.split("(")[0] for name in CASES}, f"add a contract case for {sorted(exported - set(CASES))}"


def _signature(tree):
    return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_collector_contract(name):
    collector = CASES[name](_context())
    assert isinstance(collector, Collector)
    prompts = 2
    graphdef, params = _model()
    state = steps.init_state(params, algorithms.grpo(kl_coef=0.0), jax.random.key(0), ref_params=params,
                             collector=collector, prompts=prompts).replace(models=_frozen_models())
    if "reference" in collector.needs:
        assert state.ref_params is not None
    reads = collector.reads(prompts)
    traces = []

    def collect(cstate, policy_state, data, rng):
        traces.append(None)
        return collector.collect(cstate, policy_state, data, rng)

    jitted = jax.jit(collect)
    batch, cstate, metrics = jitted(state.collector_state, state, _data(0, reads), jax.random.key(1))
    assert _signature(batch) == _signature(collector.example(prompts))
    assert batch.batch_size % batch.group_size == 0
    assert jax.tree.structure(cstate) == jax.tree.structure(state.collector_state)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(metrics))
    eager = collector.collect(state.collector_state, state, _data(0, reads), jax.random.key(1))
    for a, b in zip(jax.tree.leaves((batch, cstate, metrics)), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)
    again, cstate2, _ = jitted(cstate, state.replace(step=jnp.int32(1)), _data(1, reads), jax.random.key(2))
    assert len(traces) == 1, "a second step with same-shaped data retraced"
    assert _signature(again) == _signature(batch)
    assert jax.tree.structure(cstate2) == jax.tree.structure(cstate)
