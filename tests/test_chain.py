"""The chain task (polrl.tasks.chain): the generator, the splits, the final-answer rewards."""
import dataclasses
import re

import jax
import numpy as np
import pytest

from polrl.tasks import chain, get_task, task_batch
from polrl.tasks.chain import ChainConfig, final_answer, scratchpad
from polrl.tasks.registry import chain_host_reward
from polrl.tasks.tokenizer import CharTokenizer

SMALL = dict(min_terms=3, max_terms=8, ops="+-", num_train=400, num_test=100)


def test_scratchpad_by_hand():
    assert scratchpad([5, 8, 3, 9], ["+", "-", "+"]) == "5+8=13,13-3=10,10+9=19#19"
    assert scratchpad([2, 7, 4], ["-", "+"]) == "2-7=-5,-5+4=-1#-1"
    assert final_answer("5+8=13#13") == "13" and final_answer("13") is None and final_answer("1#2#-3 ") == "-3"


def test_generator_is_deterministic_correct_and_spread_over_lengths():
    config = ChainConfig(**SMALL)
    splits = chain.make_splits(config)
    assert splits == chain.make_splits(ChainConfig(**SMALL))
    assert splits != chain.make_splits(dataclasses.replace(config, seed=1))
    assert (len(splits["train"]), len(splits["test"])) == (400, 100)
    for e in splits["train"] + splits["test"]:
        prompt, answer, k = e["prompt"], e["answer"], e["terms"]
        assert re.fullmatch(r"\d([-+]\d)*=", prompt) and len(re.findall(r"\d", prompt)) == k
        steps, final = answer.split("#")
        total = eval(prompt[:-1])  # one-digit operands and + - only: Python's left-to-right value
        assert final == str(total) and len(steps.split(",")) == k - 1
        for step in steps.split(","):  # every step is a true equation
            lhs, rhs = step.split("=")
            assert eval(lhs) == int(rhs)
        assert len(prompt) <= config.max_prompt_chars and len(answer) <= config.max_answer_chars
    terms = [e["terms"] for e in splits["train"]]
    assert set(terms) == set(range(3, 9))  # every length, roughly uniformly
    assert min(np.bincount(terms)[3:]) > 400 / 6 / 2
    lengths = [len(e["answer"]) for e in splits["train"]]
    assert min(lengths) <= 20 and max(lengths) >= 50


def test_splits_are_disjoint_with_the_same_mix():
    splits = chain.make_splits(ChainConfig(**SMALL))
    assert not {e["prompt"] for e in splits["test"]} & {e["prompt"] for e in splits["train"]}
    mean_terms = lambda s: np.mean([e["terms"] for e in splits[s]])
    assert abs(mean_terms("train") - mean_terms("test")) < 0.6


@pytest.mark.parametrize("field,value,message", [
    ("min_terms", 1, r"min_terms=1; it must be an int >= 2"),
    ("max_terms", 2, r"max_terms=2; it must be an int in \[min_terms=3, 30\]"),
    ("ops", "*", r"ops='\*'; it must be"),
    ("num_test", 0, r"num_test=0; it must be an int >= 1"),
])
def test_config_errors(field, value, message):
    with pytest.raises(ValueError, match=message):
        ChainConfig(**{**SMALL, field: value})


def test_rewards_read_the_final_answer_only(tmp_path):
    task = get_task("chain", data_dir=str(tmp_path), **SMALL)
    assert task.max_answer_len == ChainConfig(**SMALL).max_answer_chars + 1
    examples = [task.train[i] for i in range(6)]
    batch = task_batch(task, examples)
    answers = [e["answer"] for e in batch["examples"]]
    tok = CharTokenizer()
    # The reference itself; a wrong scratchpad with the right final answer; the right scratchpad
    # with a wrong final answer; no marker; text after EOS.
    right = "9+9=1,1+1=0#" + answers[0].split("#")[1]
    completions = [answers[0], right, answers[0] + "1", answers[0].replace("#", ","), answers[0], "#"]
    want = [1, 1, 0, 0, 1, 0]
    np.testing.assert_array_equal(chain_host_reward(completions, [batch["examples"][0]] * 6), want)
    width = task.max_answer_len + 4
    response = np.zeros((6, width), np.int32)
    mask = np.zeros((6, width), np.float32)
    for i, c in enumerate(completions):
        ids = tok.encode(c, eos=True)
        response[i, : len(ids)] = ids
        mask[i, : len(ids)] = 1
    response[4, len(tok.encode(answers[0], eos=True))] = tok.encode("7")[0]  # after EOS: ignored
    response[4, len(tok.encode(answers[0], eos=True)) + 1] = tok.encode("#")[0]
    truncated = np.where(np.arange(width) < 5, response[0], 0)  # no EOS at all
    response = np.concatenate([response, truncated[None]])
    mask = np.concatenate([mask, (np.arange(width) < 5)[None].astype(np.float32)])
    ans = np.repeat(batch["answer_ba"][:1], 7, 0), np.repeat(batch["answer_valid_ba"][:1], 7, 0)
    reward = task.device_reward(response, mask, *ans)
    np.testing.assert_array_equal(reward, want + [0])
    np.testing.assert_array_equal(jax.jit(task.device_reward)(response, mask, *ans), reward)
    # Every reference scores 1 against itself, on device and on the host.
    np.testing.assert_array_equal(task.device_reward(batch["answer_ba"], batch["answer_valid_ba"],
                                                     batch["answer_ba"], batch["answer_valid_ba"]), np.ones(6))
    np.testing.assert_array_equal(task.host_reward(answers, examples), np.ones(6))
