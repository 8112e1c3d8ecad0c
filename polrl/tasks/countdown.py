"""Countdown task: reach a target from a few numbers with + - * and parentheses.

Prompt format: the numbers joined by ",", then ":", the target, then "?"; e.g.
"3,7,25:46?" asks for an expression equal to 46 that uses 3, 7 and 25, each at most
once. The answer stored with each example is one valid expression (a demonstration
for SFT), e.g. "25+3*7"; any other valid expression earns the same reward
(`countdown_reward`).

Generation, per example: the count of numbers is uniform in
min_numbers..max_numbers and each number uniform in 1..max_number. The
demonstration combines all of them: while more than one sub-expression is left, two
distinct ones are picked uniformly (left, right), joined by an operator drawn
uniformly from + - *, and parenthesized only where precedence needs it. The
example is kept iff the value is in 1..max_target, so kept examples have fewer
numbers more often than the uniform draw (more numbers overshoot more often).

Splits come from `draw_splits`, keyed on (sorted numbers, target), so no test
problem appears in train in any order of its numbers. Features: prompt, answer
(Text), numbers (int32 [n]), target (int32).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from polrl.tasks.data import GeneratedSplits, config_splits

_OPS = "+-*"
_PRECEDENCE = {"+": 1, "-": 1, "*": 2}
_ATOM = 3  # precedence of a bare number


@dataclasses.dataclass(eq=False)
class CountdownConfig(tfds.core.BuilderConfig):
    """Difficulty knobs; `name` is derived from them (it names the data folder)."""

    name: str = dataclasses.field(init=False, default="")
    min_numbers: int = 3
    max_numbers: int = 4
    max_number: int = 25
    max_target: int = 100
    num_train: int = 20_000
    num_test: int = 1_000
    seed: int = 0

    def __post_init__(self):
        checks = [
            ("min_numbers", 2 <= self.min_numbers, "an int >= 2"),
            (
                "max_numbers",
                self.min_numbers <= self.max_numbers <= 6,
                f"an int in [min_numbers={self.min_numbers}, 6]",
            ),
            ("max_number", self.max_number >= 1, "an int >= 1"),
            ("max_target", self.max_target >= 1, "an int >= 1"),
            ("num_train", self.num_train >= 1, "an int >= 1"),
            ("num_test", self.num_test >= 1, "an int >= 1"),
            ("seed", self.seed >= 0, "an int >= 0"),
        ]
        for field, ok, expected in checks:
            if not ok:
                raise ValueError(
                    f"CountdownConfig: {field}={getattr(self, field)!r}; "
                    f"it must be {expected}."
                )
        self.name = (
            f"numbers{self.min_numbers}to{self.max_numbers}-max{self.max_number}"
            f"-target{self.max_target}-train{self.num_train}-test{self.num_test}"
            f"-seed{self.seed}"
        )

    @property
    def max_prompt_chars(self) -> int:
        """Longest prompt: max_numbers full-width numbers, commas, ":", target, "?"."""
        n = self.max_numbers
        return n * len(str(self.max_number)) + (n - 1) + 1 + len(str(self.max_target)) + 1

    @property
    def max_answer_chars(self) -> int:
        """Longest demonstration: n numbers, n - 1 operators and at most one pair of
        parentheses around each of the n - 2 non-root operator nodes."""
        n = self.max_numbers
        return n * len(str(self.max_number)) + (n - 1) + 2 * (n - 2)


def _combine(left: tuple[str, int, int], right: tuple[str, int, int], op: str):
    """(text, value, precedence) of `left op right` with the needed parentheses."""
    precedence = _PRECEDENCE[op]
    left_text, left_value, left_prec = left
    right_text, right_value, right_prec = right
    if left_prec < precedence:
        left_text = f"({left_text})"
    # a-(b+c) and a-(b-c) need parentheses; a+(b-c) and a*(b*c) do not.
    if right_prec < precedence or (op == "-" and right_prec == precedence):
        right_text = f"({right_text})"
    value = {
        "+": left_value + right_value,
        "-": left_value - right_value,
        "*": left_value * right_value,
    }[op]
    return f"{left_text}{op}{right_text}", value, precedence


def sample_problems(
    config: CountdownConfig, rng: np.random.Generator, n: int
) -> list[dict]:
    """Up to n examples drawn as the module says (out-of-range targets dropped)."""
    k = config.max_numbers
    # Per candidate: 1 uniform for the count, k for the numbers, 3 per merge step.
    uniforms = rng.random((n, 1 + k + 3 * (k - 1))).tolist()
    span = config.max_numbers - config.min_numbers + 1
    examples = []
    for u in uniforms:
        count = config.min_numbers + int(u[0] * span)
        numbers = [1 + int(x * config.max_number) for x in u[1 : 1 + count]]
        nodes = [(str(x), x, _ATOM) for x in numbers]
        steps = u[1 + k :]
        while len(nodes) > 1:
            u_left, u_right, u_op = steps[:3]
            steps = steps[3:]
            i = int(u_left * len(nodes))
            j = int(u_right * (len(nodes) - 1))
            j += j >= i
            merged = _combine(nodes[i], nodes[j], _OPS[int(u_op * 3)])
            nodes = [node for m, node in enumerate(nodes) if m not in (i, j)]
            nodes.append(merged)
        text, target, _ = nodes[0]
        if 1 <= target <= config.max_target:
            examples.append(
                {
                    "prompt": ",".join(map(str, numbers)) + f":{target}?",
                    "answer": text,
                    "numbers": numbers,
                    "target": target,
                }
            )
    return examples


def make_splits(config: CountdownConfig) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]} for `config` (see `draw_splits`)."""
    return config_splits(config, sample_problems, harder_hint="raise max_number, max_target or max_numbers",
                         key=lambda example: (tuple(sorted(example["numbers"])), example["target"]))


class Countdown(GeneratedSplits, tfds.core.GeneratorBasedBuilder):
    """TFDS builder for the countdown task (features: see the module docstring)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.", "1.1.0": "Hash-partitioned held-out problems."}
    BUILDER_CONFIGS = [CountdownConfig()]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "prompt": tfds.features.Text(),
                    "answer": tfds.features.Text(),
                    "numbers": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "target": np.int32,
                }
            ),
        )

    def make_splits(self, config):
        return make_splits(config)
