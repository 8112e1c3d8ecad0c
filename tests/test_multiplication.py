"""The multiplication task (polrl.tasks.multiplication): problems, both kinds of demonstration,
rewards, and tool demonstrations that the calculator environment replays exactly."""
import collections
import dataclasses
import re

import numpy as np
import pytest

from polrl import envs
from polrl.tasks import get_task, multiplication, task_batch
from polrl.tasks.multiplication import MultiplicationConfig, tool_transcript

SMALL = dict(num_digits=3, num_train=400, num_test=100)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def test_problems_are_correct_deterministic_and_within_bounds():
    config = MultiplicationConfig(**SMALL)
    splits = multiplication.make_splits(config)
    assert splits == multiplication.make_splits(MultiplicationConfig(**SMALL))
    assert splits != multiplication.make_splits(dataclasses.replace(config, seed=1))
    assert (len(splits["train"]), len(splits["test"])) == (400, 100)
    digits = collections.Counter()
    for e in splits["train"] + splits["test"]:
        a, b = map(int, re.fullmatch(r"(\d+)\*(\d+)=", e["prompt"]).groups())
        assert e["answer"] == e["target"] == str(a * b)
        assert len(e["prompt"]) <= config.max_prompt_chars and len(e["target"]) <= config.max_target_chars
        digits.update([len(str(a)), len(str(b))])
    assert set(digits) == {1, 2, 3} and min(digits.values()) > 200  # each digit count about 1/3
    assert not {e["prompt"] for e in splits["test"]} & {e["prompt"] for e in splits["train"]}


def test_tool_demonstrations_answer_the_same_problems_with_the_calculator():
    direct = multiplication.make_splits(MultiplicationConfig(**SMALL))
    config = MultiplicationConfig(**SMALL, tool_demonstrations=True)
    tool = multiplication.make_splits(config)
    assert config.name.endswith("-tool") and config.max_answer_chars == 6 * 3 + 5
    for split in ("train", "test"):
        assert [(e["prompt"], e["target"]) for e in tool[split]] == [(e["prompt"], e["target"]) for e in direct[split]]
        for e in tool[split]:
            assert e["answer"] == f"<{e['prompt'][:-1]}>={e['target']}\n{e['target']}"
            assert len(e["answer"]) <= config.max_answer_chars
    assert tool_transcript(37, 485) == "<37*485>=17945\n17945"


def test_config_errors():
    with pytest.raises(ValueError, match=r"num_digits=0; it must be an int in \[1, 9\]"):
        MultiplicationConfig(num_digits=0)


@pytest.mark.parametrize("tool", [False, True])
def test_task_rewards_the_product(data_dir, tool):
    task = get_task("multiplication", data_dir=data_dir, tool_demonstrations=tool, **SMALL)
    assert task.name == "multiplication" and task.max_prompt_len == 1 + 8
    assert task.max_answer_len == (24 if tool else 7)  # longest demonstration + EOS
    batch = task_batch(task, [task.train[i] for i in range(16)])
    targets = [e["target"] for e in batch["examples"]]
    np.testing.assert_array_equal(task.host_reward(targets, batch["examples"]), np.ones(16))
    np.testing.assert_array_equal(task.host_reward([t + "0" for t in targets], batch["examples"]), np.zeros(16))
    if tool:  # a transcript is not an answer: the final answer comes from the environment's last turn
        assert task.device_reward is None
        answers = [e["answer"] for e in batch["examples"]]
        np.testing.assert_array_equal(task.host_reward(answers, batch["examples"]), np.zeros(16))
    else:  # device and host rewards agree on the demonstrations and on wrong answers
        wrong = np.where(batch["answer_valid_ba"], (batch["answer_ba"] - 2) % 10 + 3, batch["answer_ba"])
        for response, want in ((batch["answer_ba"], 1.0), (wrong, 0.0)):
            reward = task.device_reward(response, batch["answer_valid_ba"], batch["answer_ba"], batch["answer_valid_ba"])
            np.testing.assert_array_equal(reward, np.full(16, want))


def test_calculator_replays_every_tool_demonstration(data_dir):
    task = get_task("multiplication", data_dir=data_dir, tool_demonstrations=True, **SMALL)
    env, tok = envs.calculator(task), task.tokenizer
    for example in task_batch(task, [task.train[i] for i in range(len(task.train))])["examples"]:
        call, rest = example["answer"].split(">", 1)
        observation, final = rest.split("\n", 1)
        episode = env.new_episode()
        assert episode.reset(example) == []
        obs, reward, done = episode.step(tok.encode(call + ">"))
        assert (tok.decode(obs), reward, done) == (observation + "\n", 0.0, False)
        assert episode.step(tok.encode(final, eos=True)) == ([], 1.0, True)
