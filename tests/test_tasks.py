"""Synthetic TFDS tasks, load_split (without TensorFlow), Task objects, batching."""
import collections
import dataclasses
import re
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from polrl.tasks.data import draw_splits
from polrl.tasks import arithmetic, countdown
from polrl.tasks.arithmetic import Arithmetic, ArithmeticConfig
from polrl.tasks.countdown import CountdownConfig
from polrl.tasks.data import (
    BatchIterator,
    encode_answers,
    encode_prompts,
    load_split,
    task_batch,
)
from polrl.tasks.registry import (
    Task,
    arithmetic_host_reward,
    get_task,
    task_names,
)
from polrl.tasks.rewards import countdown_reward, parse_expression
from polrl.tasks.tokenizer import CharTokenizer


def _operand_digits(prompt):
    return [len(x) for x in re.findall(r"\d+", prompt)]


# --- arithmetic generation -------------------------------------------------------


def test_arithmetic_deterministic_sizes_and_correct():
    config = ArithmeticConfig(num_digits=3, num_operands=3, ops="+-*", num_train=500, num_test=100)
    splits = arithmetic.make_splits(config)
    assert splits == arithmetic.make_splits(
        ArithmeticConfig(num_digits=3, num_operands=3, ops="+-*", num_train=500, num_test=100)
    )
    assert splits != arithmetic.make_splits(dataclasses.replace(config, seed=1))
    assert (len(splits["train"]), len(splits["test"])) == (500, 100)
    for example in splits["train"] + splits["test"]:
        prompt = example["prompt"]
        assert re.fullmatch(r"\d+([-+*]\d+){2}=", prompt)
        assert example["answer"] == str(parse_expression(prompt[:-1])[0])
        assert len(prompt) <= config.max_prompt_chars
        assert len(example["answer"]) <= config.max_answer_chars
    assert any(e["answer"].startswith("-") for e in splits["train"])


def test_arithmetic_test_prompts_held_out_with_same_difficulty_mix():
    # 2-digit, 2-operand addition has 10,000 prompts, 100 of them one-digit sums.
    config = ArithmeticConfig(num_digits=2, num_train=3000, num_test=1000)
    splits = arithmetic.make_splits(config)
    test_prompts = {e["prompt"] for e in splits["test"]}
    assert not test_prompts & {e["prompt"] for e in splits["train"]}

    def one_digit_sums(split):
        return np.mean([max(_operand_digits(e["prompt"])) == 1 for e in splits[split]])

    # Both splits draw 1+1-digit problems at the sampler's rate, 1/4 (binomial sd ≈ 0.014
    # for 1000 draws); holding out the first distinct draws would empty train of them.
    assert abs(one_digit_sums("train") - 0.25) < 0.05
    assert abs(one_digit_sums("test") - 0.25) < 0.05


def test_arithmetic_digit_knob_changes_digit_distribution():
    def digit_counts(num_digits):
        config = ArithmeticConfig(num_digits=num_digits, num_train=3000, num_test=10)
        prompts = [e["prompt"] for e in arithmetic.make_splits(config)["train"]]
        return collections.Counter(d for p in prompts for d in _operand_digits(p))

    assert set(digit_counts(1)) == {1}
    counts = digit_counts(3)
    assert set(counts) == {1, 2, 3}
    total = sum(counts.values())
    for digits in (1, 2, 3):  # uniform digit count per operand
        assert abs(counts[digits] / total - 1 / 3) < 0.05


def test_arithmetic_config_errors():
    with pytest.raises(ValueError, match=r"ops='\+/'.*\"\+-\*\""):
        ArithmeticConfig(ops="+/")
    with pytest.raises(ValueError, match="num_operands=1; it must be an int >= 2"):
        ArithmeticConfig(num_operands=1)
    # A one-problem space lies wholly in train or wholly in test: the other split can't fill.
    one = lambda rng, n: [{"prompt": "1+1=", "answer": "2"}] * n
    with pytest.raises(ValueError, match="problem space is too small.*raise num_digits"):
        draw_splits(one, key=lambda e: e["prompt"], num_train=5, num_test=5, seed=0,
                    what="one", harder_hint="raise num_digits")


# --- countdown generation ---------------------------------------------------------


def test_countdown_answers_valid_and_splits_disjoint():
    config = CountdownConfig(num_train=1000, num_test=200)
    splits = countdown.make_splits(config)
    assert splits == countdown.make_splits(CountdownConfig(num_train=1000, num_test=200))
    assert (len(splits["train"]), len(splits["test"])) == (1000, 200)
    for example in splits["train"] + splits["test"]:
        numbers, target = example["numbers"], example["target"]
        assert example["prompt"] == ",".join(map(str, numbers)) + f":{target}?"
        assert 3 <= len(numbers) <= 4 and 1 <= target <= 100
        assert countdown_reward(example["answer"], numbers, target) == 1.0
        assert len(example["prompt"]) <= config.max_prompt_chars
        assert len(example["answer"]) <= config.max_answer_chars

    def key(e):
        return tuple(sorted(e["numbers"])), e["target"]

    test_keys = [key(e) for e in splits["test"]]
    assert not set(test_keys) & {key(e) for e in splits["train"]}
    assert {len(e["numbers"]) for e in splits["train"]} == {3, 4}


def test_countdown_config_errors():
    with pytest.raises(ValueError, match=r"max_numbers=2; it must be an int in \[min_numbers=3, 6\]"):
        CountdownConfig(max_numbers=2)


# --- load_split (TFDS, array_record, no TensorFlow) ---------------------------------

SMALL_ARITHMETIC = dict(num_digits=2, num_operands=3, ops="+-", num_train=300, num_test=50)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def test_load_split_builds_once_and_matches_generator(data_dir, monkeypatch):
    train = load_split(Arithmetic, "train", data_dir=data_dir, **SMALL_ARITHMETIC)
    test = load_split("arithmetic", "test", data_dir=data_dir, **SMALL_ARITHMETIC)
    assert (len(train), len(test)) == (300, 50)
    expected = arithmetic.make_splits(ArithmeticConfig(**SMALL_ARITHMETIC))
    stored = sorted((e["prompt"].decode(), e["answer"].decode()) for e in test)
    assert stored == sorted((e["prompt"], e["answer"]) for e in expected["test"])

    def fail(*args, **kwargs):
        raise AssertionError("download_and_prepare ran again for a prepared dataset")

    monkeypatch.setattr(Arithmetic, "download_and_prepare", fail)
    assert len(load_split(Arithmetic, "train", data_dir=data_dir, **SMALL_ARITHMETIC)) == 300
    assert "tensorflow" not in sys.modules


def test_load_split_rejects_unknown_config_field(data_dir):
    with pytest.raises(ValueError, match=r"\['digits'\] are not fields of ArithmeticConfig"):
        load_split(Arithmetic, "train", data_dir=data_dir, digits=3)


def test_mock_data_with_arithmetic_builder(tmp_path):
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        source = load_split(Arithmetic, "train", data_dir=str(tmp_path), **SMALL_ARITHMETIC)
        assert len(source) == 6
        toy = _toy_task(source, max_len=24)
        batch = next(BatchIterator(source, 4, task=toy, seed=0))
    assert batch["prompt_bp"].shape == (4, 24)
    assert all(isinstance(e["prompt"], str) for e in batch["examples"])
    assert not any(tmp_path.iterdir())  # nothing was generated


# --- Task objects ----------------------------------------------------------------


def test_arithmetic_task_rewards(data_dir):
    task = get_task("arithmetic", data_dir=data_dir, **SMALL_ARITHMETIC)
    assert task.name == "arithmetic"
    assert task.max_prompt_len == 1 + 3 * 2 + 2 + 1
    assert task.max_answer_len == len("297") + 1 + 1  # 3 * 99, a sign, EOS
    batch = task_batch(task, [task.train[i] for i in range(8)])
    answers = [e["answer"] for e in batch["examples"]]
    np.testing.assert_array_equal(task.host_reward(answers, batch["examples"]), np.ones(8))
    np.testing.assert_array_equal(
        task.host_reward([a + "0" for a in answers], batch["examples"]), np.zeros(8)
    )
    # The reference answer tokens, used as the response, match on device.
    reward = task.device_reward(
        batch["answer_ba"], batch["answer_valid_ba"], batch["answer_ba"], batch["answer_valid_ba"]
    )
    np.testing.assert_array_equal(reward, np.ones(8))
    with pytest.raises(ValueError, match="got 1 completions for 8 examples"):
        task.host_reward(answers[:1], batch["examples"])


def test_countdown_task_rewards(data_dir):
    task = get_task("countdown", data_dir=data_dir, num_train=200, num_test=50)
    assert task.device_reward is None and len(task.test) == 50
    examples = [task.train[i] for i in range(8)]  # raw: bytes and numpy values
    answers = [e["answer"].decode() for e in examples]
    np.testing.assert_array_equal(task.host_reward(answers, examples), np.ones(8))
    batch = task_batch(task, examples)
    assert batch["answer_ba"].shape == (8, task.max_answer_len)


def test_get_task_unknown_name():
    assert task_names() == ["arithmetic", "chain", "countdown", "gsm8k", "multiplication", "programs", "target_says"]
    with pytest.raises(ValueError, match=r"unknown task 'gsm9k'; valid names are \['arithmetic', 'chain', 'countdown', 'gsm8k', 'multiplication', 'programs', 'target_says'\]"):
        get_task("gsm9k", data_dir="unused")


# --- encoding and BatchIterator ------------------------------------------------------


def test_encode_prompts_left_pads_with_bos():
    tok = CharTokenizer()
    prompt_bp, valid_bp = encode_prompts(tok, ["1+2=", "12+34="], 8)
    assert prompt_bp.dtype == np.int32 and valid_bp.dtype == bool
    np.testing.assert_array_equal(prompt_bp[0], [0, 0, 0, 1] + tok.encode("1+2="))
    np.testing.assert_array_equal(valid_bp[0], [False] * 3 + [True] * 5)
    assert prompt_bp[1, 1] == tok.bos_id and valid_bp[1].sum() == 7
    with pytest.raises(ValueError, match=r"prompt '123\+456=' is 9 tokens with BOS.*max_prompt_len=8"):
        encode_prompts(tok, ["123+456="], 8)


def test_encode_answers_right_pads_with_eos():
    tok = CharTokenizer()
    answer_ba, valid_ba = encode_answers(tok, ["3", "-12"], 5)
    np.testing.assert_array_equal(answer_ba, [tok.encode("3") + [2, 0, 0, 0], tok.encode("-12") + [2, 0]])
    np.testing.assert_array_equal(valid_ba.sum(1), [2, 4])
    with pytest.raises(ValueError, match=r"answer '1234' is 5 tokens with EOS.*raise Task.max_answer_len"):
        encode_answers(tok, ["1234"], 4)


def _toy_task(source, max_len=4):
    return Task(
        name="toy",
        tokenizer=CharTokenizer(),
        max_prompt_len=max_len,
        max_answer_len=max_len,
        train=source,
        test=source,
        host_reward=arithmetic_host_reward,
    )


TOY = [{"prompt": f"{i}=", "answer": str(i)} for i in range(10)]


def _ids(batch):
    return [int(e["answer"]) for e in batch["examples"]]


def test_batch_iterator_epochs_are_fresh_permutations():
    it = BatchIterator(TOY, 4, task=_toy_task(TOY), seed=3)
    stream = [i for _ in range(5) for i in _ids(next(it))]  # 20 items = 2 epochs
    assert it.position == 20
    assert sorted(stream[:10]) == sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]
    ordered = BatchIterator(TOY, 5, task=_toy_task(TOY), seed=3, shuffle=False)
    assert _ids(next(ordered)) + _ids(next(ordered)) == list(range(10))


def test_batch_iterator_resume_at_position():
    task = _toy_task(TOY)
    it = BatchIterator(TOY, 3, task=task, seed=7)
    first = [next(it) for _ in range(2)]
    saved = it.position
    rest = [_ids(next(it)) for _ in range(4)]
    resumed = BatchIterator(TOY, 3, task=task, seed=7, position=saved)
    assert [_ids(next(resumed)) for _ in range(4)] == rest
    again = BatchIterator(TOY, 3, task=task, seed=7)
    np.testing.assert_array_equal(next(again)["prompt_bp"], first[0]["prompt_bp"])


def test_batch_iterator_shards_split_each_global_batch():
    task = _toy_task(TOY)
    whole = BatchIterator(TOY, 6, task=task, seed=1, position=4)
    shards = [
        BatchIterator(TOY, 6, task=task, seed=1, position=4, shard_index=s, shard_count=3)
        for s in range(3)
    ]
    for _ in range(3):
        parts = [_ids(next(shard)) for shard in shards]
        assert all(len(p) == 2 for p in parts)
        assert sum(parts, []) == _ids(next(whole))
    assert {shard.position for shard in shards} == {whole.position}


def test_batch_iterator_argument_errors():
    task = _toy_task(TOY)
    with pytest.raises(ValueError, match="batch_size=5 must be a positive multiple of shard_count=2"):
        BatchIterator(TOY, 5, task=task, seed=0, shard_count=2)
    with pytest.raises(ValueError, match="shard_index=2, shard_count=2"):
        BatchIterator(TOY, 4, task=task, seed=0, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="empty"):
        BatchIterator([], 4, task=task, seed=0)
