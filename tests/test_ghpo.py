"""GHPO's hints (polrl.collectors.hints): hint lengths and hinted prompts by hand on chain problems,
which groups get a hint and at which stage (by hand, and against a loop over group_samples), the
solved groups' rows bit-identical to group_samples with the same key, GUIDED source and version,
the one-line errors, and held-out evaluation without hints. Tiny float64 model, so
the jitted and eager samples cannot differ by float32 rounding."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import collectors, sharding
from polrl.collectors.hints import (
    HINT_RATIO, answer_lengths, hint_lengths, hint_width, hinted_groups, hinted_prompts, unsolved_groups, with_hints)
from polrl.core import GUIDED, ON_POLICY, PolicyState
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.tasks import CharTokenizer, Task
from polrl.tasks.data import encode_answers, encode_prompts
from tiny_models import tiny_params

V, EOS, PAD, G = 8, 7, 0, 2
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                        dtype=jnp.float64, param_dtype=jnp.float64)
SAMPLING = SamplingConfig(max_new_tokens=3, eos_id=EOS, pad_id=PAD)
TOK = CharTokenizer()
SEED = 4  # a key under which the stage test's prompts stop at several stages


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def _model():
    with jax.enable_x64(True):
        return tiny_params(CFG)


def _first_token_is_one(response_bt, mask_bt, answer_ba, answer_valid_ba):
    """Reward 1 for every row whose prompt's labelled answer starts with token 1: a prompt is
    solved or not whatever is sampled."""
    del response_bt, mask_bt, answer_valid_ba
    return (answer_ba[:, 0] == 1).astype(jnp.float32)


def _first_token_three(response_bt, mask_bt, answer_ba, answer_valid_ba):
    """Reward 1 for a response whose first token is 3: random outcomes under the tiny model."""
    del mask_bt, answer_ba, answer_valid_ba
    return (response_bt[:, 0] == 3).astype(jnp.float32)


def _context(reward, answer_len: int = 4):
    task = Task(name="tiny", tokenizer=None, max_prompt_len=3, max_answer_len=answer_len, train=[], test=[],
                host_reward=None, device_reward=reward)
    return collectors.Context(graphdef=_model()[0], task=task, sampling=SAMPLING, group_size=G,
                              layout=sharding.layout_from_config(None))


def _data(prompts: int, first_tokens, seed: int = 0):
    """``prompts`` 3-token prompts (the first one 2 tokens, left-padded); answers of 3 tokens + EOS
    whose first tokens are ``first_tokens``."""
    rng = np.random.default_rng(seed)
    valid = np.ones((prompts, 3), bool)
    valid[0, 0] = False
    answer = rng.integers(1, EOS, (prompts, 4))
    answer[:, 0] = first_tokens
    answer[:, 3] = EOS
    return {"prompt_bp": jnp.asarray(np.where(valid, rng.integers(1, EOS, (prompts, 3)), PAD), jnp.int32),
            "prompt_valid_bp": jnp.asarray(valid),
            "answer_ba": jnp.asarray(answer, jnp.int32),
            "answer_valid_ba": jnp.ones((prompts, 4), bool)}


def _state(step: int = 5):
    return PolicyState(step=jnp.int32(step), rng=None, params=_model()[1], opt_state=None)


# ----------------------------------------------------------------------------- hints by hand
def test_hint_lengths_round_half_to_even_like_the_reference_code():
    """round(ω·|a*|) with Python's rounding: ω = 0.25 of 0, 2, 6, 10, 17 tokens = 0, 0 (0.5),
    2 (1.5), 2 (2.5), 4 (4.25); ω = 0.75 of 2, 6 = 2 (1.5), 4 (4.5)."""
    lengths = jnp.asarray([0, 2, 6, 10, 17])
    np.testing.assert_array_equal(hint_lengths(lengths, 0.25, 17), [0, 0, 2, 2, 4])
    np.testing.assert_array_equal(hint_lengths(jnp.asarray([2, 6]), 0.75, 17), [2, 4])
    assert hint_width((0.25, 0.5, 0.75), 75) == 56  # chain_ghpo's answers of 75 tokens: round(56.25)


def test_hinted_prompts_on_a_chain_problem():
    """ "5+8-3+9=" with the scratchpad "5+8=13,13-3=10,10+9=19#19" (25 characters): the hints of
    ω = 0.25, 0.5, 0.75 are its first round(6.25) = 6, round(12.5) = 12 and round(18.75) = 19
    characters, after the prompt, the row left-padded; "1+2=" with "1+2=3#3" (7) gets round(1.75) = 2,
    round(3.5) = 4 and round(5.25) = 5."""
    prompt, answer = "5+8-3+9=", "5+8=13,13-3=10,10+9=19#19"
    prompt_bp, valid_bp = encode_prompts(TOK, [prompt, "1+2="], 10)
    answer_ba, answer_valid_ba = encode_answers(TOK, [answer, "1+2=3#3"], 27)
    lengths = answer_lengths(jnp.asarray(answer_ba), jnp.asarray(answer_valid_ba), TOK.eos_id)
    np.testing.assert_array_equal(lengths, [25, 7])
    width = hint_width((0.25, 0.5, 0.75), 27)
    expected = {0.25: ("5+8=13", "1+"), 0.5: ("5+8=13,13-3=", "1+2="), 0.75: ("5+8=13,13-3=10,10+9", "1+2=3")}
    for ratio, hints in expected.items():
        tokens, valid = hinted_prompts(jnp.asarray(prompt_bp), jnp.asarray(valid_bp), jnp.asarray(answer_ba),
                                       hint_lengths(lengths, ratio, 27), width, TOK.pad_id)
        assert tokens.shape == (2, 10 + width)
        for row, (text, hint) in enumerate(zip([prompt, "1+2="], hints)):
            ids = TOK.encode(text + hint, bos=True)
            np.testing.assert_array_equal(tokens[row, -len(ids):], ids)
            np.testing.assert_array_equal(valid[row], np.arange(10 + width) >= 10 + width - len(ids))
            np.testing.assert_array_equal(tokens[row, :-len(ids)], TOK.pad_id)


def test_unsolved_groups_are_those_without_a_positive_reward():
    reward = jnp.asarray([0.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.5])
    np.testing.assert_array_equal(unsolved_groups(reward, 2), [True, False, True, False])


# ----------------------------------------------------------------------------- the wrapper
def test_solved_groups_are_group_samples_rows_and_unsolved_ones_get_the_last_hint():
    """Prompts 0 and 2 (answers starting with token 1) are solved by every sample: their rows are
    group_samples' with the same key, bit for bit, prompts left-padded by H columns; prompt 1 never
    is: it goes through every stage and keeps the last one's rows — group_samples' samples of its
    hinted prompt with the stage's key — marked GUIDED with the step's version and ω_S."""
    ratios = (0.25, 0.75)
    ctx = _context(_first_token_is_one)
    data = _data(3, [1, 4, 1])
    state, rng = _state(), jax.random.key(3)
    collector = with_hints(ratios)(collectors.group_samples(ctx), ctx)
    batch, _, metrics = jax.jit(collector.collect)((), state, data, rng)
    plain, _, plain_metrics = jax.jit(collectors.group_samples(ctx).collect)((), state, data, rng)
    width = hint_width(ratios, 4)
    assert width == 3 and batch.prompt_bp.shape == (6, 3 + width)
    solved = np.array([0, 1, 4, 5])
    for field in ("response_bt", "mask_bt", "behavior_logp_bt", "reward_b", "version_b", "group_b"):
        np.testing.assert_array_equal(np.asarray(getattr(batch, field))[solved], np.asarray(getattr(plain, field))[solved])
    np.testing.assert_array_equal(batch.prompt_bp[solved, width:], plain.prompt_bp[solved])
    np.testing.assert_array_equal(batch.prompt_valid_bp[solved, width:], plain.prompt_valid_bp[solved])
    assert not np.asarray(batch.prompt_valid_bp[solved, :width]).any()
    np.testing.assert_array_equal(batch.source_b, [ON_POLICY, ON_POLICY, GUIDED, GUIDED, ON_POLICY, ON_POLICY])
    np.testing.assert_array_equal(batch.version_b, 5)
    np.testing.assert_array_equal(batch.aux[HINT_RATIO], [0, 0, 0.75, 0.75, 0, 0])
    # prompt 1's hint: round(0.75 · 3) = 2 answer tokens after its 3 prompt tokens
    np.testing.assert_array_equal(batch.prompt_bp[2], [PAD, *np.asarray(data["prompt_bp"][1]), *np.asarray(data["answer_ba"][1, :2])])
    np.testing.assert_array_equal(batch.prompt_valid_bp[2], [False, True, True, True, True, True])
    hinted = {**data, "prompt_bp": batch.prompt_bp[::G], "prompt_valid_bp": batch.prompt_valid_bp[::G]}
    last, _, _ = jax.jit(collectors.group_samples(ctx).collect)((), state, hinted, jax.random.fold_in(rng, len(ratios)))
    for field in ("response_bt", "mask_bt", "behavior_logp_bt", "reward_b"):
        np.testing.assert_array_equal(np.asarray(getattr(batch, field))[2:4], np.asarray(getattr(last, field))[2:4])
    assert float(metrics["accuracy"]) == float(plain_metrics["accuracy"]) == pytest.approx(2 / 3)
    assert float(metrics["hint/hinted_frac"]) == pytest.approx(1 / 3)
    assert float(metrics["hint/stage1_frac"]) == 0.0 and float(metrics["hint/stage2_frac"]) == pytest.approx(1 / 3)
    assert float(metrics["hint/solved_frac"]) == 0.0 and float(metrics["hint/unsolved_frac"]) == pytest.approx(1 / 3)
    assert float(metrics["guided_accuracy"]) == 0.0


def _reference(ctx, state, data, rng, ratios):
    """The staged loop spelled out with group_samples on numpy rows: the unhinted pass, then for
    each stage the groups still without a positive reward replaced by the hinted pass's rows."""
    collect = jax.jit(collectors.group_samples(ctx).collect)
    sample = lambda d, key: collect((), state, d, key)[0]
    first = sample(data, rng)
    width = hint_width(ratios, data["answer_ba"].shape[1])
    rows = {f: np.asarray(getattr(first, f)).copy() for f in ("response_bt", "mask_bt", "reward_b", "behavior_logp_bt")}
    rows["prompt_bp"] = np.pad(np.asarray(first.prompt_bp), ((0, 0), (width, 0)), constant_values=PAD)
    rows["source_b"] = np.full(first.batch_size, ON_POLICY)
    rows["hint"] = np.zeros(first.batch_size)
    stage = np.zeros(data["prompt_bp"].shape[0], int)
    lengths = answer_lengths(data["answer_ba"], data["answer_valid_ba"], EOS)
    for s, ratio in enumerate(ratios, 1):
        unsolved = (rows["reward_b"].reshape(-1, G) <= 0).all(axis=1)
        prompt, valid = hinted_prompts(data["prompt_bp"], data["prompt_valid_bp"], data["answer_ba"],
                                       hint_lengths(lengths, ratio, 4), width, PAD)
        hinted = sample({**data, "prompt_bp": prompt, "prompt_valid_bp": valid}, jax.random.fold_in(rng, s))
        for k in np.flatnonzero(unsolved):
            at = slice(k * G, (k + 1) * G)
            for f in ("response_bt", "mask_bt", "reward_b", "behavior_logp_bt", "prompt_bp"):
                rows[f][at] = np.asarray(getattr(hinted, f))[at]
            rows["source_b"][at], rows["hint"][at], stage[k] = GUIDED, ratio, s
    return rows, stage


def test_stages_match_a_loop_over_group_samples():
    """Random outcomes (first token 3): the wrapper's rows equal the staged loop's, and the prompts
    of this draw stop at different stages. (jit == no-jit: tests/test_collectors.py's contract.)"""
    ratios = (0.25, 0.5, 0.75)
    ctx = _context(_first_token_three)
    data = _data(8, np.arange(8) % 5 + 1, seed=1)
    state, rng = _state(), jax.random.key(SEED)
    batch, _, metrics = jax.jit(hinted_groups(ctx, hint_ratios=ratios).collect)((), state, data, rng)
    rows, stage = _reference(ctx, state, data, rng, ratios)
    assert len(set(stage.tolist())) >= 3, f"this draw should stop prompts at several stages: {stage}"
    for f in ("response_bt", "mask_bt", "reward_b", "behavior_logp_bt", "prompt_bp", "source_b"):
        np.testing.assert_array_equal(np.asarray(getattr(batch, f)), rows[f], err_msg=f)
    np.testing.assert_array_equal(batch.aux[HINT_RATIO], rows["hint"])
    for s in range(1, 4):
        assert float(metrics[f"hint/stage{s}_frac"]) == pytest.approx(np.mean(stage == s))
    hinted = stage > 0
    solved = (rows["reward_b"].reshape(-1, G) > 0).any(axis=1)
    assert float(metrics["hint/solved_frac"]) == pytest.approx(solved[hinted].mean())
    assert float(metrics["guided_accuracy"]) == pytest.approx(rows["reward_b"][rows["source_b"] == GUIDED].mean())


def test_a_step_with_every_prompt_solved_is_group_samples():
    ctx = _context(_first_token_is_one)
    data, state, rng = _data(2, [1, 1]), _state(), jax.random.key(1)
    batch, _, metrics = jax.jit(hinted_groups(ctx).collect)((), state, data, rng)
    plain, _, _ = jax.jit(collectors.group_samples(ctx).collect)((), state, data, rng)
    np.testing.assert_array_equal(batch.response_bt, plain.response_bt)
    np.testing.assert_array_equal(batch.source_b, ON_POLICY)
    assert float(metrics["hint/hinted_frac"]) == 0.0 and float(metrics["hint/solved_frac"]) == 0.0


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("ratios", [(), (0.5, 0.25), (0.0, 0.5), (0.5, 1.0), (0.5, 0.5)])
def test_bad_hint_ratios_are_one_line_errors(ratios):
    with pytest.raises(ValueError, match=r"with_hints: hint_ratios=.* must be increasing shares in \(0, 1\)"):
        with_hints(ratios)


def test_a_model_too_short_for_the_hinted_prompt_is_an_error():
    ctx = _context(_first_token_is_one, answer_len=16)  # H = round(0.75 · 16) = 12: 3 + 12 + 3 > 16
    data = _data(2, [1, 4])
    data = {**data, "answer_ba": jnp.pad(data["answer_ba"], ((0, 0), (0, 12))),
            "answer_valid_ba": jnp.pad(data["answer_valid_ba"], ((0, 0), (0, 12)))}
    with pytest.raises(ValueError, match=r"need 18 positions, more than model.max_len=16; raise model.max_len to 18"):
        hinted_groups(ctx).collect((), _state(), data, jax.random.key(0))


def test_a_host_collector_is_refused():
    ctx = _context(_first_token_is_one)
    inner = collectors.group_samples(ctx)._replace(host=True)
    with pytest.raises(ValueError, match="with_hints: the inner collector runs on the host"):
        with_hints()(inner, ctx)


# ----------------------------------------------------------------------------- evaluation
def test_held_out_prompts_are_answered_without_hints(tmp_path, monkeypatch):
    """A chain_ghpo run evaluates the task's plain held-out prompts: the greedy sampler of its
    evaluation gets exactly task_batch's prompts of the test split, no hint and no wider prompt."""
    from experiments import chain_ghpo
    from polrl.tasks.data import task_batch
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path / "data"))
    with jax.enable_x64(False):
        config = chain_ghpo.get_config("smoke")
        spec = build_spec(config, progress=False)
        assert [p.collector.example(p.prompts_per_step).prompt_bp.shape[1] for p in spec.phases][-1] > \
            spec.task.max_prompt_len  # the training prompts are widened for the hints
        trainer = Trainer(spec, str(tmp_path / "run"))
        seen = []
        greedy = trainer._greedy
        trainer._greedy = lambda params, prompt_bp, valid_bp, rng: seen.append(
            (np.asarray(prompt_bp), np.asarray(valid_bp))) or greedy(params, prompt_bp, valid_bp, rng)
        trainer.evaluate(spec.init_params)
    plain = task_batch(spec.task, [spec.task.test[i] for i in range(config.eval.num_examples)])
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0][0], plain["prompt_bp"])
    np.testing.assert_array_equal(seen[0][1], plain["prompt_valid_bp"])
