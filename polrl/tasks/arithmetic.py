"""Arithmetic task: "37+485=" -> "522", as a TFDS builder.

Each problem has `num_operands` non-negative integer operands joined by operators
drawn uniformly from `ops`. Each operand's digit count is drawn uniformly from
1..num_digits and its value uniformly among numbers with exactly that many digits
(1 digit: 0-9; k > 1 digits: 10^(k-1) .. 10^k - 1), so short and long problems are
equally common whatever num_digits is. The answer is the exact value under the
usual precedence (* before + and -, left to right), written as a base-10 integer
with a leading "-" when negative; `reverse_answer=True` writes the digits least
significant first (see `format_answer`).

Splits come from `draw_splits`: a fixed 10% of the problem space (by a hash of
the prompt) is held out for test, so no test prompt appears in train while both
splits keep the same mix of difficulties. The data is a pure function of the
config; change VERSION whenever the generator's output changes.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from polrl.tasks.data import GeneratedSplits, config_splits
from polrl.tasks.rewards import parse_expression

_OP_NAMES = {"+": "add", "-": "sub", "*": "mul"}


@dataclasses.dataclass(eq=False)
class ArithmeticConfig(tfds.core.BuilderConfig):
    """Difficulty knobs; `name` is derived from them (it names the data folder)."""

    name: str = dataclasses.field(init=False, default="")
    num_digits: int = 2
    num_operands: int = 2
    ops: str = "+"
    num_train: int = 20_000
    num_test: int = 1_000
    seed: int = 0
    reverse_answer: bool = False

    def __post_init__(self):
        checks = [
            ("num_digits", 1 <= self.num_digits <= 18, "an int in [1, 18]"),
            ("num_operands", self.num_operands >= 2, "an int >= 2"),
            ("num_train", self.num_train >= 1, "an int >= 1"),
            ("num_test", self.num_test >= 1, "an int >= 1"),
            ("seed", self.seed >= 0, "an int >= 0"),
        ]
        for field, ok, expected in checks:
            if not ok:
                raise ValueError(
                    f"ArithmeticConfig: {field}={getattr(self, field)!r}; "
                    f"it must be {expected}."
                )
        if not self.ops or set(self.ops) - set(_OP_NAMES) or len(set(self.ops)) < len(self.ops):
            raise ValueError(
                f"ArithmeticConfig: ops={self.ops!r}; it must be a non-empty string "
                'of distinct operators from "+-*", e.g. "+" or "+-*".'
            )
        ops_name = "_".join(_OP_NAMES[op] for op in self.ops)
        self.name = (
            f"digits{self.num_digits}-operands{self.num_operands}-{ops_name}"
            f"-train{self.num_train}-test{self.num_test}-seed{self.seed}"
            + ("-reversed" if self.reverse_answer else "")
        )

    @property
    def max_prompt_chars(self) -> int:
        """Longest prompt: every operand at full width, the operators and "="."""
        return self.num_operands * self.num_digits + (self.num_operands - 1) + 1

    @property
    def max_answer_chars(self) -> int:
        """Bound on the answer's length, sign included.

        |value| <= M^n with "*" (a sum of products of operands, M = 10^d - 1 >= 9)
        and <= n * M without it.
        """
        largest = 10**self.num_digits - 1
        if "*" in self.ops:
            bound = largest**self.num_operands
        else:
            bound = self.num_operands * largest
        return len(str(bound)) + ("-" in self.ops)


def format_answer(value: int, reverse: bool) -> str:
    """The answer string: base-10 digits, least significant first when `reverse`.

    Writing the digits in the order a carry propagates (units first) makes each
    output digit depend on one column of the operands and the previous carry, which
    small transformers learn from far fewer examples (Lee et al. 2023, "Teaching
    Arithmetic to Small Transformers"). The sign, if any, stays in front: -522 -> "-225".
    """
    digits = str(abs(value))
    return ("-" if value < 0 else "") + (digits[::-1] if reverse else digits)


def sample_problems(
    config: ArithmeticConfig, rng: np.random.Generator, n: int
) -> list[dict]:
    """n examples {"prompt": "37+485=", "answer": "522"} drawn as the module says."""
    shape = (n, config.num_operands)
    digits = rng.integers(1, config.num_digits + 1, size=shape)
    low = np.where(digits == 1, 0, 10 ** (digits - 1))
    operands = rng.integers(low, 10**digits, size=shape).tolist()
    op_index = rng.integers(0, len(config.ops), size=(n, config.num_operands - 1))
    examples = []
    for values, ops in zip(operands, op_index.tolist()):
        text = str(values[0]) + "".join(
            config.ops[o] + str(v) for o, v in zip(ops, values[1:])
        )
        value, _ = parse_expression(text)
        examples.append({"prompt": text + "=", "answer": format_answer(value, config.reverse_answer)})
    return examples


def difficulty(example: dict) -> int:
    """The problem's difficulty: the number of digits of its exact value |v|, sign excluded
    ("3+5+1=" → 1, "9+8+7=" → 2, "12-40=" → 2), i.e. the answer's length without its sign.

    Read from the prompt alone (``parse_expression`` of the text before "="), so it applies to
    train prompts, labelled demonstrations and preference rows alike, whatever the answer's
    format (``reverse_answer``). A longer answer takes more generated digits, each depending on
    the carries of the columns before it (for sums of one-digit operands: 2 digits iff the sum
    carries), so the digit count orders problems by how much a small model must get right. It
    stands in for the pass rate of a reference model, the difficulty of "Light-R1: Curriculum
    SFT, DPO and RL for Long COT from Scratch and Beyond" (arXiv 2503.10460), in a phase's
    ``difficulty`` filter (``polrl.train.build.select_by_difficulty``).
    ``example["prompt"]`` is a str (``polrl.tasks.data.decode_example`` of a data-source row).
    """
    value, _ = parse_expression(example["prompt"].removesuffix("="))
    return len(str(abs(value)))


def make_splits(config: ArithmeticConfig) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]} for `config` (see `draw_splits`)."""
    return config_splits(config, sample_problems, harder_hint="raise num_digits or num_operands")


class Arithmetic(GeneratedSplits, tfds.core.GeneratorBasedBuilder):
    """TFDS builder for the arithmetic task; features "prompt" and "answer" (Text)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.", "1.1.0": "Hash-partitioned held-out problems."}
    BUILDER_CONFIGS = [ArithmeticConfig()]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {"prompt": tfds.features.Text(), "answer": tfds.features.Text()}
            ),
        )

    def make_splits(self, config):
        return make_splits(config)
