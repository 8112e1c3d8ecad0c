"""Multiplication task: "37*485=" → "17945", answered in one's head or with a calculator tool.

Each problem multiplies two non-negative integers. Each operand's digit count is drawn
uniformly from 1..num_digits and its value uniformly among numbers with exactly that many
digits (1 digit: 0-9; k > 1 digits: 10^(k-1) .. 10^k - 1), as in `polrl.tasks.arithmetic`, so
one-digit facts a small model can memorize and products it cannot compute in its head are
mixed in every batch. The verifier compares the final answer with the product (`target`).

Every example carries two demonstrations of the same problem (its "answer", what the SFT warm
start imitates, is chosen by `tool_demonstrations`):

    direct   "17945"
    tool     "<37*485>=17945\\n17945"

The tool demonstration is the transcript of `polrl.envs.calculator`: the call "<37*485>"
(one turn, ending at the call-end ">"), the calculator's observation "=17945\\n", then the final
answer turn "17945". Splits come from `draw_splits` keyed on the prompt (10% of the problem
space held out for test), identical for both kinds of demonstration. Features: prompt, answer,
target (Text). The data is a pure function of the config; change VERSION whenever the
generator's output changes.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from polrl.tasks.data import GeneratedSplits, config_splits


@dataclasses.dataclass(eq=False)
class MultiplicationConfig(tfds.core.BuilderConfig):
    """Difficulty knobs and the demonstration kind; `name` is derived from them."""

    name: str = dataclasses.field(init=False, default="")
    num_digits: int = 3
    num_train: int = 20_000
    num_test: int = 1_000
    seed: int = 0
    tool_demonstrations: bool = False

    def __post_init__(self):
        checks = [
            ("num_digits", 1 <= self.num_digits <= 9, "an int in [1, 9]"),
            ("num_train", self.num_train >= 1, "an int >= 1"),
            ("num_test", self.num_test >= 1, "an int >= 1"),
            ("seed", self.seed >= 0, "an int >= 0"),
        ]
        for field, ok, expected in checks:
            if not ok:
                raise ValueError(f"MultiplicationConfig: {field}={getattr(self, field)!r}; it must be {expected}.")
        self.name = (f"digits{self.num_digits}-train{self.num_train}-test{self.num_test}-seed{self.seed}"
                     + ("-tool" if self.tool_demonstrations else ""))

    @property
    def max_prompt_chars(self) -> int:
        """"a*b=" with both operands at full width."""
        return 2 * self.num_digits + 2

    @property
    def max_target_chars(self) -> int:
        """The longest product: (10^d − 1)² has 2d digits."""
        return 2 * self.num_digits

    @property
    def max_answer_chars(self) -> int:
        """The longest demonstration: the product, or call + observation + product."""
        if not self.tool_demonstrations:
            return self.max_target_chars
        return (self.max_prompt_chars + 1) + (self.max_target_chars + 2) + self.max_target_chars


def tool_transcript(a: int, b: int) -> str:
    """The calculator transcript answering ``a*b``: call, observation, final answer."""
    return f"<{a}*{b}>={a * b}\n{a * b}"


def sample_problems(config: MultiplicationConfig, rng: np.random.Generator, n: int) -> list[dict]:
    """n examples {"prompt": "37*485=", "answer": demonstration, "target": "17945"}."""
    digits = rng.integers(1, config.num_digits + 1, size=(n, 2))
    low = np.where(digits == 1, 0, 10 ** (digits - 1))
    operands = rng.integers(low, 10**digits, size=(n, 2)).tolist()
    examples = []
    for a, b in operands:
        answer = tool_transcript(a, b) if config.tool_demonstrations else str(a * b)
        examples.append({"prompt": f"{a}*{b}=", "answer": answer, "target": str(a * b)})
    return examples


def make_splits(config: MultiplicationConfig) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]} for `config` (see `draw_splits`)."""
    return config_splits(config, sample_problems, harder_hint="raise num_digits")


class Multiplication(GeneratedSplits, tfds.core.GeneratorBasedBuilder):
    """TFDS builder for the multiplication task; features "prompt", "answer", "target" (Text)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [MultiplicationConfig()]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {"prompt": tfds.features.Text(), "answer": tfds.features.Text(), "target": tfds.features.Text()}
            ),
        )

    def make_splits(self, config):
        return make_splits(config)
