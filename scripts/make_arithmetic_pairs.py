"""Writes the committed preference files of the arithmetic experiments (JSONL, one pair a line):

    python scripts/make_arithmetic_pairs.py

* ``experiments/data/arithmetic_pairs.jsonl`` — 2000 pairs on train-split prompts, chosen = the
  right answer, rejected = a wrong one: the answer plus an offset drawn from ±1…±3 (kept
  non-negative), the offline data of ``experiments/arithmetic_dpo_offline.py``.
* ``experiments/data/arithmetic_closeness_pairs.jsonl`` (3000 pairs, train-split prompts) and
  ``arithmetic_closeness_pairs_test.jsonl`` (500 pairs, held-out test-split prompts) — two
  candidate answers, each the answer plus an offset of distance 0…9 (``DISTANCE_P``: the right
  answer 30%, distance 1 25%, 2 15%, 3 10%, 4–9 the rest; a random sign, kept non-negative, the
  two at different distances), ranked by the hidden closeness rule (``polrl.tasks.closeness``): the
  Bradley–Terry reward model's training and held-out pairs (``experiments/arithmetic_reward_model.py``).

The prompts are those of the experiments' task (``arithmetic_grpo``'s: three one-digit summands,
train 5000 / test 500, seed 0), in split order; every draw comes from
``np.random.default_rng([seed, split, index])``, so the files are a pure function of this script.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np

from polrl.tasks.arithmetic import ArithmeticConfig, make_splits
from polrl.tasks.closeness import closeness

OUT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "data"
TASK = dict(num_digits=1, num_operands=3, ops="+", num_train=5_000, num_test=500, seed=0)
SPLIT_IDS = {"train": 0, "test": 1}


def candidate(truth: int, offset: int) -> int:
    """``truth + offset``, mirrored to ``truth − offset`` where that would be negative."""
    return truth + offset if truth + offset >= 0 else truth - offset


def exact_pair(example: dict, rng: np.random.Generator) -> dict:
    truth = int(example["answer"])
    offset = int(rng.choice([-3, -2, -1, 1, 2, 3]))
    return {"prompt": example["prompt"], "chosen": example["answer"], "rejected": str(candidate(truth, offset))}


# distance of a candidate from the truth: mostly the right answer and near misses, where a policy's
# samples are, so the reward model learns that order most precisely
DISTANCES = np.arange(10)
DISTANCE_P = np.array([0.3, 0.25, 0.15, 0.1] + [0.2 / 6] * 6)


def closeness_pair(example: dict, rng: np.random.Generator) -> dict:
    truth = int(example["answer"])
    while True:
        d = rng.choice(DISTANCES, size=2, p=DISTANCE_P)
        a, b = (candidate(truth, int(x) * int(rng.choice([-1, 1]))) for x in d)
        if abs(a - truth) != abs(b - truth):
            break
    a, b = str(a), str(b)
    chosen, rejected = (a, b) if closeness(a, example["answer"]) > closeness(b, example["answer"]) else (b, a)
    return {"prompt": example["prompt"], "chosen": chosen, "rejected": rejected}


def write(name: str, split: str, count: int, make_pair, splits: dict) -> None:
    examples = splits[split][:count]
    rows = [make_pair(e, np.random.default_rng([TASK["seed"], SPLIT_IDS[split], i])) for i, e in enumerate(examples)]
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    (OUT / name).write_text(text)
    print(f"{OUT / name}: {len(rows)} pairs, {len(text)} bytes")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    splits = make_splits(ArithmeticConfig(**TASK))
    write("arithmetic_pairs.jsonl", "train", 2000, exact_pair, splits)
    write("arithmetic_closeness_pairs.jsonl", "train", 3000, closeness_pair, splits)
    write("arithmetic_closeness_pairs_test.jsonl", "test", 500, closeness_pair, splits)


if __name__ == "__main__":
    main()
