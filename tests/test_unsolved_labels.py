"""GHPO's label control (polrl.collectors.unsolved_labels): which rows become label rows and what
they hold, by hand; solved groups bit-identical to group_samples with the same key; the inner
collector's metrics kept; the one-line errors. Tiny float64 model (test_ghpo's)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import collectors
from polrl.collectors.unsolved_labels import label_guided_groups, with_unsolved_labels
from polrl.core import EXPERT, ON_POLICY
from polrl.rollout import SamplingConfig
from test_ghpo import EOS, G, PAD, _context, _data, _state, float64  # noqa: F401  (float64: autouse fixture)

SAMPLING = SamplingConfig(max_new_tokens=5, eos_id=EOS, pad_id=PAD)


def _label_or_first_token_one(response_bt, mask_bt, answer_ba, answer_valid_ba):
    """Reward 1 for the labelled answer itself (its 4 tokens, then padding) or for any row of a
    prompt whose answer starts with token 1: those prompts are solved whatever is sampled."""
    del mask_bt, answer_valid_ba
    if response_bt.shape[1] < 5:  # too narrow for the label: only the solved prompts
        return (answer_ba[:, 0] == 1).astype(jnp.float32)
    exact = (response_bt[:, :4] == answer_ba).all(-1) & (response_bt[:, 4] == PAD)
    return (exact | (answer_ba[:, 0] == 1)).astype(jnp.float32)


def _ctx():
    return dataclasses.replace(_context(_label_or_first_token_one), sampling=SAMPLING)


def test_label_rows_by_hand():
    """Answers starting with 1, 4, 2: the groups of prompts 1 and 2 are unsolved (the tiny model
    does not sample their 4-token answer), so with k = 1 rows 2 and 4 become the labelled answer
    (padded with PAD to 5 columns, mask over its 4 tokens, reward 1, EXPERT, behaviour log-prob 0,
    version = the step); every other row is group_samples' row under the same key."""
    ctx, data, state, rng = _ctx(), _data(3, [1, 4, 2]), _state(step=5), jax.random.key(3)
    plain, _, plain_metrics = jax.jit(collectors.group_samples(ctx).collect)((), state, data, rng)
    assert float(plain.reward_b[2:].max()) == 0.0, "this draw should leave prompts 1 and 2 unsolved"
    batch, _, metrics = jax.jit(label_guided_groups(ctx).collect)((), state, data, rng)
    labels = {2: 1, 4: 2}  # row -> prompt
    for row in range(3 * G):
        if row in labels:
            answer = np.asarray(data["answer_ba"][labels[row]])
            np.testing.assert_array_equal(batch.response_bt[row], np.r_[answer, PAD])
            np.testing.assert_array_equal(batch.mask_bt[row], [1, 1, 1, 1, 0])
            np.testing.assert_array_equal(batch.behavior_logp_bt[row], np.zeros(5))
            assert (float(batch.reward_b[row]), int(batch.source_b[row]), int(batch.version_b[row])) == (1.0, EXPERT, 5)
        else:
            for f in ("response_bt", "mask_bt", "behavior_logp_bt", "reward_b"):
                np.testing.assert_array_equal(getattr(batch, f)[row], getattr(plain, f)[row], err_msg=f"{f}[{row}]")
            assert int(batch.source_b[row]) == ON_POLICY and int(batch.version_b[row]) == 5
    np.testing.assert_array_equal(batch.prompt_bp, plain.prompt_bp)
    assert float(metrics["label/injected_frac"]) == pytest.approx(2 / 3)
    assert float(metrics["accuracy"]) == float(plain_metrics["accuracy"]) == pytest.approx(1 / 3)


def test_every_row_of_an_unsolved_group_can_be_the_label():
    ctx, data, state, rng = _ctx(), _data(2, [1, 4]), _state(), jax.random.key(3)
    batch, _, _ = jax.jit(with_unsolved_labels(G)(collectors.group_samples(ctx), ctx).collect)((), state, data, rng)
    np.testing.assert_array_equal(batch.source_b, [ON_POLICY] * G + [EXPERT] * G)
    np.testing.assert_array_equal(batch.reward_b[G:], np.ones(G))


def test_a_step_with_every_prompt_solved_is_group_samples():
    ctx, data, state, rng = _ctx(), _data(2, [1, 1]), _state(), jax.random.key(1)
    batch, _, metrics = jax.jit(label_guided_groups(ctx).collect)((), state, data, rng)
    plain, _, _ = jax.jit(collectors.group_samples(ctx).collect)((), state, data, rng)
    for f in ("response_bt", "mask_bt", "behavior_logp_bt", "reward_b"):
        np.testing.assert_array_equal(getattr(batch, f), getattr(plain, f), err_msg=f)
    np.testing.assert_array_equal(batch.source_b, ON_POLICY)
    assert float(metrics["label/injected_frac"]) == 0.0


def test_errors_name_the_field_and_the_fix():
    ctx = _ctx()
    with pytest.raises(ValueError, match=r"with_unsolved_labels: label_rows=0 must be >= 1"):
        with_unsolved_labels(0)
    with pytest.raises(ValueError, match=rf"label_rows=3 is more than the group size {G}; lower label_rows or raise "
                                         r"rollout.group_size"):
        with_unsolved_labels(3)(collectors.group_samples(ctx), ctx).collect((), _state(), _data(2, [1, 4]),
                                                                              jax.random.key(0))
    with pytest.raises(ValueError, match="with_unsolved_labels: the inner collector runs on the host"):
        with_unsolved_labels()(collectors.group_samples(ctx)._replace(host=True), ctx)
    host_only = dataclasses.replace(ctx, task=dataclasses.replace(ctx.task, device_reward=None))
    with pytest.raises(ValueError, match="with_unsolved_labels: task 'tiny' has only a host reward"):
        with_unsolved_labels()(collectors.group_samples(ctx), host_only)
    short = dataclasses.replace(ctx, sampling=SamplingConfig(max_new_tokens=3, eos_id=EOS, pad_id=PAD))
    with pytest.raises(ValueError, match=r"labelled answers \(4 tokens\) are longer than the sampled responses \(3\); "
                                         r"raise rollout.max_new_tokens"):
        label_guided_groups(short).collect((), _state(), _data(2, [1, 4]), jax.random.key(0))
