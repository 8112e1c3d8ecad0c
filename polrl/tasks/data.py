"""Getting task data: drawing held-out splits, loading TFDS splits, batching.

* `draw_splits` turns a problem sampler into train/test lists from disjoint parts
  of the problem space (used by the synthetic TFDS builders).
* `load_split` builds a TFDS dataset as array_record files once and returns a
  random-access data source; it needs no TensorFlow.
* `encode_prompts` / `encode_answers` / `task_batch` turn examples into padded id
  arrays; `BatchIterator` walks a data source deterministically and resumably.
"""
from __future__ import annotations

import dataclasses
import fcntl
import os
import tempfile
import hashlib
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow_datasets as tfds

from polrl.tasks.tokenizer import CharTokenizer

if TYPE_CHECKING:
    from polrl.tasks.registry import Task


def held_out(key: Hashable, seed: int, fraction: float) -> bool:
    """Whether problem `key` belongs to the held-out part of the problem space.

    A stable hash of (seed, key) picks a fixed `fraction` of all problems, the
    same fraction of every difficulty class, so train and test follow the same
    distribution while no test problem ever appears in train.
    """
    digest = hashlib.blake2b(repr((seed, key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") < fraction * 2**64


def draw_splits(
    sample: Callable[[np.random.Generator, int], list[dict]],
    key: Callable[[dict], Hashable],
    *,
    num_train: int,
    num_test: int,
    seed: int,
    what: str,
    harder_hint: str,
    test_fraction: float = 0.1,
) -> dict[str, list[dict]]:
    """Draws {"test": [...], "train": [...]} from one `np.random.default_rng(seed)`.

    The problem space is partitioned by `held_out(key, seed, test_fraction)`;
    candidates from `sample(rng, n)` go to test when held out and to train
    otherwise, in order, until both splits are full. Both splits are i.i.d.
    draws from the sampler's distribution restricted to their part (problems may
    repeat, in proportion to their probability), so every difficulty class is
    represented in both and no test problem appears in train. (Holding out the
    first distinct draws instead would put all of a small class, e.g. the 100
    one-digit sums, in test and none in train.) If the budget of
    10 * (num_train + num_test) / min(f, 1 - f) + 10_000 candidates runs out,
    raises ValueError naming `what` and suggesting `harder_hint`.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"{what}: test_fraction={test_fraction} must be in (0, 1).")
    rng = np.random.default_rng(seed)
    budget = int(10 * (num_train + num_test) / min(test_fraction, 1 - test_fraction)) + 10_000
    drawn = 0
    test: list[dict] = []
    train: list[dict] = []
    while len(test) < num_test or len(train) < num_train:
        if drawn >= budget:
            split, have, want = (
                ("test", len(test), num_test)
                if len(test) < num_test
                else ("train", len(train), num_train)
            )
            raise ValueError(
                f"{what}: found only {have} of {want} {split} problems after "
                f"{drawn} draws; the problem space is too small. Lower num_test / "
                f"num_train or {harder_hint}."
            )
        chunk = min(budget - drawn, 4096)
        for example in sample(rng, chunk):
            if held_out(key(example), seed, test_fraction):
                if len(test) < num_test:
                    test.append(example)
            elif len(train) < num_train:
                train.append(example)
        drawn += chunk
    return {"train": train, "test": test}


def config_splits(
    config: Any,
    sample_problems: Callable[[Any, np.random.Generator, int], list[dict]],
    *,
    harder_hint: str,
    key: Callable[[dict], Hashable] = lambda example: example["prompt"],
) -> dict[str, list[dict]]:
    """`draw_splits` for a generated task's config (its `num_train`, `num_test`, `seed`, `name`):
    problems from `sample_problems(config, rng, n)`, held out by `key` (default: the prompt)."""
    return draw_splits(
        lambda rng, n: sample_problems(config, rng, n),
        key=key,
        num_train=config.num_train,
        num_test=config.num_test,
        seed=config.seed,
        what=f"{type(config).__name__} {config.name}",
        harder_hint=harder_hint,
    )


class GeneratedSplits:
    """Builder mixin for generated tasks: the builder defines ``make_splits(config) ->
    {split: [example, ...]}`` and every split is written from it."""

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the data is generated.
        splits = self.make_splits(self.builder_config)
        return {name: self._generate_examples(rows) for name, rows in splits.items()}

    def _generate_examples(self, rows):
        yield from enumerate(rows)


def load_split(
    builder_cls_or_name: type[tfds.core.DatasetBuilder] | str,
    split: str,
    *,
    data_dir: str,
    **config_kwargs: Any,
):
    """Random-access data source (`len()`, `[i]`) for `split` of a TFDS dataset.

    `builder_cls_or_name` is a builder class or a registered TFDS name. The dataset
    is generated into `data_dir` as array_record files the first time and reused
    afterwards. `config_kwargs` are fields of the builder's config class (the class
    of `BUILDER_CONFIGS[0]`), e.g. `num_digits=3` for `Arithmetic`; without them the
    builder's default config is used. Text features come back as bytes; see
    `decode_example`.
    """
    if isinstance(builder_cls_or_name, str):
        builder_cls = tfds.builder_cls(builder_cls_or_name)
    else:
        builder_cls = builder_cls_or_name
    config = _config(builder_cls, config_kwargs)
    builder = builder_cls(data_dir=data_dir, config=config)
    if not builder.is_prepared():
        # Processes on one machine that build the same dataset take turns; the later
        # ones find it prepared and only read it.
        key = hashlib.blake2b(os.path.abspath(data_dir).encode(), digest_size=8).hexdigest()
        with open(os.path.join(tempfile.gettempdir(), f"polrl-build-{key}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            builder = builder_cls(data_dir=data_dir, config=config)
            if not builder.is_prepared():
                builder.download_and_prepare(file_format="array_record")
    return builder.as_data_source(split)


def _config(builder_cls, config_kwargs: dict[str, Any]):
    """The config to pass to `builder_cls`: None (default), a predefined name, or
    a new config built from `config_kwargs`."""
    if not config_kwargs:
        return None
    if not builder_cls.BUILDER_CONFIGS:
        raise ValueError(
            f"load_split: {builder_cls.__name__} has no BuilderConfig, so config "
            f"fields {sorted(config_kwargs)} cannot be set; call it without them."
        )
    config_cls = type(builder_cls.BUILDER_CONFIGS[0])
    base_fields = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
    knobs = {f.name for f in dataclasses.fields(config_cls) if f.init} - base_fields
    unknown = sorted(set(config_kwargs) - knobs)
    if unknown:
        raise ValueError(
            f"load_split: {unknown} are not fields of {config_cls.__name__}; "
            f"valid fields are {sorted(knobs)}."
        )
    config = config_cls(**config_kwargs)
    # TFDS refuses a new config object that reuses a predefined config's name.
    return config.name if config.name in builder_cls.builder_configs else config


def decode_example(example: dict) -> dict:
    """Copy of a data-source example with bytes decoded as UTF-8 str and 0-d
    arrays / numpy scalars turned into Python scalars; other values are kept."""
    decoded = {}
    for name, value in example.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, np.generic) or (
            isinstance(value, np.ndarray) and value.ndim == 0
        ):
            value = value.item()
        decoded[name] = value
    return decoded


def encode_prompts(
    tokenizer: CharTokenizer, prompts: Sequence[str], max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """(prompt_bp int32, prompt_valid_bp bool), each [len(prompts), max_len].

    Row b is BOS followed by the prompt's ids, LEFT-padded with pad_id so every
    prompt ends at the last column; prompt_valid_bp marks the non-pad positions.
    """
    prompt_bp = np.full((len(prompts), max_len), tokenizer.pad_id, np.int32)
    prompt_valid_bp = np.zeros((len(prompts), max_len), bool)
    for b, prompt in enumerate(prompts):
        ids = tokenizer.encode(prompt, bos=True)
        if len(ids) > max_len:
            raise ValueError(
                f"encode_prompts: prompt {prompt!r} is {len(ids)} tokens with BOS, "
                f"longer than max_prompt_len={max_len}; raise Task.max_prompt_len."
            )
        prompt_bp[b, max_len - len(ids):] = ids
        prompt_valid_bp[b, max_len - len(ids):] = True
    return prompt_bp, prompt_valid_bp


def encode_answers(
    tokenizer: CharTokenizer, answers: Sequence[str], max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """(answer_ba int32, answer_valid_ba bool), each [len(answers), max_len].

    Row b is the answer's ids followed by EOS, RIGHT-padded with pad_id;
    answer_valid_ba marks the non-pad positions (EOS included).
    """
    answer_ba = np.full((len(answers), max_len), tokenizer.pad_id, np.int32)
    answer_valid_ba = np.zeros((len(answers), max_len), bool)
    for b, answer in enumerate(answers):
        ids = tokenizer.encode(answer, eos=True)
        if len(ids) > max_len:
            raise ValueError(
                f"encode_answers: answer {answer!r} is {len(ids)} tokens with EOS, "
                f"longer than max_answer_len={max_len}; raise Task.max_answer_len."
            )
        answer_ba[b, : len(ids)] = ids
        answer_valid_ba[b, : len(ids)] = True
    return answer_ba, answer_valid_ba


def task_batch(task: Task, examples: Sequence[dict]) -> dict:
    """Encodes examples (each with "prompt" and "answer") for `task`.

    Returns numpy arrays prompt_bp, prompt_valid_bp [B, max_prompt_len] and
    answer_ba, answer_valid_ba [B, max_answer_len] (see encode_prompts /
    encode_answers), plus "examples": the examples after `decode_example`.
    """
    examples = [decode_example(e) for e in examples]
    prompt_bp, prompt_valid_bp = encode_prompts(
        task.tokenizer, [e["prompt"] for e in examples], task.max_prompt_len
    )
    answer_ba, answer_valid_ba = encode_answers(
        task.tokenizer, [e["answer"] for e in examples], task.max_answer_len
    )
    return {
        "prompt_bp": prompt_bp,
        "prompt_valid_bp": prompt_valid_bp,
        "answer_ba": answer_ba,
        "answer_valid_ba": answer_valid_ba,
        "examples": examples,
    }


class BatchIterator:
    """Endless, deterministic, resumable batches of `task_batch(task, examples)`.

    The data source is read as one stream: stream item k is
    `source[order(k // N)[k % N]]`, N = len(source), where `order(epoch)` is
    `np.random.default_rng([seed, epoch]).permutation(N)` (or `arange(N)` when
    `shuffle=False`). So each epoch is a fresh permutation and batches run across
    epoch boundaries without dropping anything.

    `batch_size` is the GLOBAL batch size. `position` counts stream items consumed
    by all shards together; each call returns the global batch
    stream[position : position + batch_size], of which this shard gets the slice
    [shard_index * batch_size // shard_count, (shard_index + 1) * batch_size //
    shard_count), and `position` advances by `batch_size`. Saving `position` and
    passing it back on restart yields exactly the same next batches.
    """

    def __init__(
        self,
        source: Sequence[dict],
        batch_size: int,
        *,
        task: Task,
        seed: int,
        shuffle: bool = True,
        position: int = 0,
        shard_index: int = 0,
        shard_count: int = 1,
    ):
        if len(source) == 0:
            raise ValueError("BatchIterator: the data source is empty.")
        if shard_count < 1 or not 0 <= shard_index < shard_count:
            raise ValueError(
                f"BatchIterator: shard_index={shard_index}, shard_count={shard_count}; "
                "need shard_count >= 1 and 0 <= shard_index < shard_count."
            )
        if batch_size < 1 or batch_size % shard_count:
            raise ValueError(
                f"BatchIterator: batch_size={batch_size} must be a positive multiple "
                f"of shard_count={shard_count} (it is the global batch size)."
            )
        if seed < 0 or position < 0:
            raise ValueError(
                f"BatchIterator: seed={seed} and position={position} must be >= 0."
            )
        self.source = source
        self.batch_size = batch_size
        self.task = task
        self.seed = seed
        self.shuffle = shuffle
        self.position = position
        self.shard_index = shard_index
        self.shard_count = shard_count
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        """Source indices in the order epoch `epoch` reads them (cached)."""
        if epoch not in self._orders:
            size = len(self.source)
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            if self.shuffle:
                rng = np.random.default_rng([self.seed, epoch])
                self._orders[epoch] = rng.permutation(size)
            else:
                self._orders[epoch] = np.arange(size)
        return self._orders[epoch]

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        local = self.batch_size // self.shard_count
        start = self.position + self.shard_index * local
        size = len(self.source)
        examples = []
        for k in range(start, start + local):
            epoch, offset = divmod(k, size)
            examples.append(self.source[int(self._order(epoch)[offset])])
        self.position += self.batch_size
        return task_batch(self.task, examples)
