"""Reward-augmented pairs (``collectors.with_reward_goals``, the ``ra_dpo`` noun) and held-out
prompts with a prefix (``eval.prompt_prefix``)."""
import importlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, collectors, objectives
from polrl.collectors.reward_goals import goal_level, reward_goal_pairs
from polrl.core import Batch, Collector
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer, with_prefix

GOALS = {"[2]": [102], "[5]": [105], "[8]": [108]}  # one token per goal: 100 + the digit


def _pairs():
    return Batch(
        prompt_bp=jnp.array([[0, 5], [0, 5], [3, 4], [3, 4]], jnp.int32),
        prompt_valid_bp=jnp.array([[0, 1], [0, 1], [1, 1], [1, 1]], bool),
        response_bt=jnp.array([[1, 2], [2, 1], [6, 6], [6, 1]], jnp.int32),
        mask_bt=jnp.ones((4, 2), jnp.float32),
        reward_b=jnp.array([0.25, 1.0, 0.625, 0.625], jnp.float32),  # pair 0: row 1 better; pair 1: a tie
        group_b=jnp.array([0, 0, 1, 1], jnp.int32),
        version_b=jnp.array([3, 3, 4, 4], jnp.int32),
        group_size=2,
    )


def test_goal_levels_by_hand():
    # L = 3 levels over [0, 1]: round(2 r) → 0.2 → 0, 0.25 → 0 (0.5 rounds to even), 0.3 → 1, 1 → 2
    np.testing.assert_array_equal(goal_level(jnp.array([0.0, 0.2, 0.25, 0.3, 0.74, 0.76, 1.0, 1.5]), 3),
                                  [0, 0, 0, 1, 1, 2, 2, 2])


@pytest.mark.parametrize("jit", [False, True])
def test_relabelled_pairs_by_hand(jit):
    goal_ids = jnp.array([[102], [105], [108]], jnp.int32)  # levels 0, 1, 2
    fn = jax.jit(reward_goal_pairs) if jit else reward_goal_pairs
    out = fn(_pairs(), goal_ids)
    assert out.batch_size == 8 and out.group_size == 2
    np.testing.assert_array_equal(out.group_b, [0, 0, 1, 1, 2, 2, 3, 3])
    # pair 0: goal r_w = 1.0 (level 2: row 1 preferred), then goal r_l = 0.25 (level 0: row 0, the former rejected);
    # the goal goes before the left-padded prompt
    np.testing.assert_array_equal(out.prompt_bp[:4], [[108, 0, 5], [108, 0, 5], [102, 0, 5], [102, 0, 5]])
    np.testing.assert_array_equal(out.prompt_valid_bp[0], [True, False, True])
    np.testing.assert_array_equal(out.response_bt[:4], [[1, 2], [2, 1], [1, 2], [2, 1]])
    # pair 1 is a tie (0.625 → level 1 both times): reward 0.5 everywhere, no preference
    np.testing.assert_array_equal(out.prompt_bp[4:, 0], [105] * 4)
    np.testing.assert_array_equal(out.reward_b, [0, 1, 1, 0, 0.5, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(out.aux["goal_reward_b"], [1, 1, 0.25, 0.25, 0.625, 0.625, 0.625, 0.625])
    np.testing.assert_array_equal(out.aux["pair_reward_b"], [0.25, 1, 0.25, 1, 0.625, 0.625, 0.625, 0.625])
    np.testing.assert_array_equal(out.version_b, [3, 3, 3, 3, 4, 4, 4, 4])
    # DPO on the relabelled pairs: two untied pairs, each preferring the row the goal names
    t = objectives.preference_loss(beta=0.1)
    scored = out.replace(logp_bt=jnp.zeros((8, 2)), ref_logp_bt=jnp.zeros((8, 2)))
    res, _ = t.apply(scored, t.init())
    np.testing.assert_allclose(res.metrics["pref_pairs"], 2.0)
    np.testing.assert_allclose(res.losses["dpo"], np.log(2.0), rtol=1e-6)  # h = 0 at the reference


def _wrapped(inner_batch, goals=("[2]", "[5]", "[8]")):
    ctx = types.SimpleNamespace(task=types.SimpleNamespace(tokenizer=types.SimpleNamespace(encode=GOALS.__getitem__)))
    inner = Collector(init=lambda prompts: (), collect=lambda c, s, d, r: (inner_batch, c, {"accuracy": 0.5}),
                      example=lambda prompts: jax.eval_shape(lambda: inner_batch))
    return collectors.with_reward_goals(goals)(inner, ctx)


def test_wrapper_relabels_its_inner_pairs_and_describes_them():
    wrapped = _wrapped(_pairs())
    batch, _, metrics = jax.jit(wrapped.collect)((), None, {}, jax.random.key(0))
    want = reward_goal_pairs(_pairs(), jnp.array([[102], [105], [108]]))
    for a, b in zip(jax.tree.leaves(batch), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(metrics["goal_untied_pairs"]) == 0.5 and float(metrics["accuracy"]) == 0.5
    shapes = lambda t: [(x.shape, x.dtype) for x in jax.tree.leaves(t)]
    assert shapes(wrapped.example(2)) == shapes(batch)


def test_wrapper_errors():
    with pytest.raises(ValueError, match=r"with_reward_goals: goals=\('\[1\]',\) must be at least two"):
        collectors.with_reward_goals(("[1]",))
    ctx = types.SimpleNamespace(task=types.SimpleNamespace(tokenizer=types.SimpleNamespace(encode=lambda t: [1] * len(t))))
    with pytest.raises(ValueError, match=r"encode to \[3, 4\] tokens; give every goal the same token length"):
        collectors.with_reward_goals(("[0]", "[10]"))(None, ctx)
    groups = _pairs().replace(group_size=4)
    with pytest.raises(ValueError, match=r"returns groups of 4 rows; it must return scored pairs"):
        _wrapped(groups).example(1)


def test_ra_dpo_is_dpo_behind_the_wrapper():
    ra, plain = algorithms.ra_dpo(beta=0.2), algorithms.dpo(beta=0.2)
    assert ra.needs == plain.needs and ra.collector is not None and plain.collector is None


def test_held_out_prompts_carry_the_prefix():
    data = {"prompt_bp": np.array([[0, 7], [4, 7]], np.int32), "prompt_valid_bp": np.array([[0, 1], [1, 1]], bool),
            "examples": ["a", "b"]}
    out = with_prefix(data, (11, 12))
    np.testing.assert_array_equal(out["prompt_bp"], [[11, 12, 0, 7], [11, 12, 4, 7]])
    np.testing.assert_array_equal(out["prompt_valid_bp"], [[1, 1, 0, 1], [1, 1, 1, 1]])
    assert with_prefix(data, ()) is data


def test_the_experiment_evaluates_with_the_highest_goal(tmp_path, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path / "data"))
    config = importlib.import_module("experiments.arithmetic_ra_dpo").get_config("smoke")
    spec = build_spec(config, progress=False)
    assert spec.eval_prompt_prefix == tuple(spec.task.tokenizer.encode("[1]"))
    trainer = Trainer(spec, str(tmp_path / "run"))
    prompt = trainer._eval_data["prompt_bp"]
    assert prompt.shape[1] == spec.task.max_prompt_len + 3
    np.testing.assert_array_equal(spec.task.tokenizer.decode_batch(prompt[:1, :3])[0], "[1]")
