"""Chain task: a running total written step by step, then the final answer, as a TFDS builder.

A problem is a chain of k one-digit operands joined by operators drawn uniformly from `ops`,
evaluated left to right ("5+8-3+9=" asks for 19). The labelled answer is a scratchpad that
writes every intermediate result, one step per operand after the first, then "#" and the
final value:

    prompt  "5+8-3+9="
    answer  "5+8=13,13-3=10,10+9=19#19"

Step j (j = 1 .. k−1) is "t_{j−1} op_j x_j = t_j", with t_0 = x_0 and t_j the running total;
a negative total is written with a leading "-" ("2-7=-5,-5+4=-1#-1"). Difficulty grows with k,
drawn uniformly in [min_terms, max_terms], so one batch mixes short and long chains: a step
costs 6–9 tokens, a chain of k operands about 8·(k−1) + 4. Only the final answer is
rewarded (`final_answer_reward`): the text after the last "#" must equal the reference's.

Splits come from `draw_splits` keyed on the prompt (10% of the problem space held out for
test, the same mix of lengths in both). The data is a pure function of the config; change
VERSION whenever the generator's output changes.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from polrl.tasks.data import GeneratedSplits, config_splits

MARKER = "#"
STEP_SEPARATOR = ","  # ends every scratchpad step but the last (which ends with MARKER, the answer, EOS)
_OPS = "+-"


@dataclasses.dataclass(eq=False)
class ChainConfig(tfds.core.BuilderConfig):
    """Difficulty knobs; `name` is derived from them (it names the data folder)."""

    name: str = dataclasses.field(init=False, default="")
    min_terms: int = 3
    max_terms: int = 10
    ops: str = "+"
    num_train: int = 20_000
    num_test: int = 1_000
    seed: int = 0

    def __post_init__(self):
        checks = [
            ("min_terms", 2 <= self.min_terms, "an int >= 2"),
            ("max_terms", self.min_terms <= self.max_terms <= 30, f"an int in [min_terms={self.min_terms}, 30]"),
            ("num_train", self.num_train >= 1, "an int >= 1"),
            ("num_test", self.num_test >= 1, "an int >= 1"),
            ("seed", self.seed >= 0, "an int >= 0"),
        ]
        for field, ok, expected in checks:
            if not ok:
                raise ValueError(f"ChainConfig: {field}={getattr(self, field)!r}; it must be {expected}.")
        if not self.ops or set(self.ops) - set(_OPS) or len(set(self.ops)) < len(self.ops):
            raise ValueError(f'ChainConfig: ops={self.ops!r}; it must be "+", "-" or "+-".')
        self.name = (f"terms{self.min_terms}to{self.max_terms}-ops{''.join('p' if o == '+' else 'm' for o in self.ops)}"
                     f"-train{self.num_train}-test{self.num_test}-seed{self.seed}")

    @property
    def max_prompt_chars(self) -> int:
        """Longest prompt: max_terms digits, the operators between them and "="."""
        return 2 * self.max_terms

    @property
    def max_total_chars(self) -> int:
        """Longest running total, sign included: |t| ≤ 9·max_terms."""
        return len(str(9 * self.max_terms)) + ("-" in self.ops)

    @property
    def max_answer_chars(self) -> int:
        """Longest scratchpad: k − 1 steps "t op x = t," (the last without ","), "#" and t."""
        t = self.max_total_chars
        return (self.max_terms - 1) * (2 * t + 4) - 1 + 1 + t


def scratchpad(operands: list[int], ops: list[str]) -> str:
    """The labelled answer for `operands` joined by `ops` (see the module docstring)."""
    total, steps = operands[0], []
    for op, x in zip(ops, operands[1:]):
        new = total + x if op == "+" else total - x
        steps.append(f"{total}{op}{x}={new}")
        total = new
    return ",".join(steps) + f"{MARKER}{total}"


STEP_ENDS = "," + MARKER  # the characters that close a step of the scratchpad (the last step closes with "#")


def parse_prompt(prompt: str) -> tuple[list[int], list[str]]:
    """(operands, ops) of a prompt "x0 op1 x1 … =" (one-digit operands); a ValueError names the prompt."""
    body = prompt[:-1] if prompt.endswith("=") else None
    if not body or len(body) % 2 == 0 or not all(c.isdigit() for c in body[0::2]) or set(body[1::2]) - set(_OPS):
        raise ValueError(f"chain.parse_prompt: {prompt!r} is not a chain prompt like '5+8-3='")
    return [int(c) for c in body[0::2]], list(body[1::2])


def revise(prompt: str, response: str) -> str:
    """The minimal expert revision of ``response`` to ``prompt`` (host reference of
    ``polrl.collectors.revised_pairs.revise_tokens``): keep the response up to its first wrong
    step, rewrite everything from there with the correct continuation; a right response is
    returned as it is.

    The steps of the right answer (``scratchpad``) are its pieces closed by a ``STEP_ENDS``
    character: "5+8=13," "13+3=16," "16+9=25#" and the final value "25". The response keeps
    its longest prefix made of whole right steps; the first step that differs (a wrong total,
    a wrong operand, a malformed piece, a missing or extra character) and everything after it
    are replaced by the right steps. Because the right continuation of a right prefix is
    unique, the revision of any wrong response is the labelled answer itself: what the rule
    chooses is which part of the response is kept (``kept``) and which is rewritten.
    """
    right = scratchpad(*parse_prompt(prompt))
    return response if response == right else right


def kept_prefix(prompt: str, response: str) -> int:
    """Characters of ``response`` that ``revise`` keeps: the length of its longest prefix made of
    whole right steps (the full length when the response is right)."""
    right = scratchpad(*parse_prompt(prompt))
    if response == right:
        return len(response)
    kept = 0
    for i, (a, b) in enumerate(zip(response, right)):
        if a != b:
            break
        if b in STEP_ENDS:
            kept = i + 1
    return kept


def sample_problems(config: ChainConfig, rng: np.random.Generator, n: int) -> list[dict]:
    """n examples {"prompt", "answer", "terms"} drawn as the module says."""
    terms = rng.integers(config.min_terms, config.max_terms + 1, size=n)
    digits = rng.integers(0, 10, size=(n, config.max_terms)).tolist()
    op_index = rng.integers(0, len(config.ops), size=(n, config.max_terms - 1)).tolist()
    examples = []
    for k, xs, os in zip(terms.tolist(), digits, op_index):
        operands, ops = xs[:k], [config.ops[o] for o in os[: k - 1]]
        prompt = str(operands[0]) + "".join(op + str(x) for op, x in zip(ops, operands[1:])) + "="
        examples.append({"prompt": prompt, "answer": scratchpad(operands, ops), "terms": k})
    return examples


def make_splits(config: ChainConfig) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]} for `config` (see `draw_splits`)."""
    return config_splits(config, sample_problems, harder_hint="raise max_terms")


def final_answer(text: str) -> str | None:
    """The text after the last "#", stripped; None when there is no "#"."""
    head, marker, tail = text.rpartition(MARKER)
    return tail.strip() if marker else None


def marked_tail(tokens_bt: jax.Array, valid_bt: jax.Array, marker_id: int, eos_id: int, width: int):
    """(tail_bw, tail_valid_bw, ok_b): the `width` tokens after the last marker before the first
    EOS of each row, where they are before that EOS; ok = the row has a valid EOS with a marker
    before it."""
    t = tokens_bt.shape[1]
    col = jnp.arange(t)
    eos_bt = valid_bt & (tokens_bt == eos_id)
    has_eos = eos_bt.any(axis=1)
    end_b = jnp.where(has_eos, jnp.argmax(eos_bt, axis=1), t)
    marks = valid_bt & (tokens_bt == marker_id) & (col < end_b[:, None])
    has_mark = marks.any(axis=1)
    start_b = t - 1 - jnp.argmax(marks[:, ::-1], axis=1)  # the last marker
    idx_bw = start_b[:, None] + 1 + jnp.arange(width)
    tail_bw = jnp.take_along_axis(tokens_bt, jnp.minimum(idx_bw, t - 1), axis=1)
    return tail_bw, idx_bw < end_b[:, None], has_eos & has_mark


def final_answer_reward(marker_id: int, eos_id: int):
    """A jittable device reward: 1 iff the response's final answer equals the reference's.

    The final answer of a token row is the tokens strictly between its last ``marker_id`` and
    its first EOS (tokens after the EOS are ignored; so is everything before the marker, the
    scratchpad). A response without an EOS or without a marker before it scores 0. Returns
    ``(response_bt, mask_bt, answer_ba, answer_valid_ba) -> float32 [B]``.
    """

    def reward(response_bt, mask_bt, answer_ba, answer_valid_ba):
        width = answer_ba.shape[1]
        ref, ref_valid, ref_ok = marked_tail(answer_ba, answer_valid_ba.astype(bool), marker_id, eos_id, width)
        got, got_valid, got_ok = marked_tail(response_bt, mask_bt.astype(bool), marker_id, eos_id, width)
        same = jnp.all((ref_valid == got_valid) & (~ref_valid | (ref == got)), axis=1)
        return (same & ref_ok & got_ok).astype(jnp.float32)

    reward.__name__ = "final_answer_reward"
    return reward


class Chain(GeneratedSplits, tfds.core.GeneratorBasedBuilder):
    """TFDS builder for the chain task; features "prompt", "answer" (Text), "terms" (int32)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [ChainConfig()]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {"prompt": tfds.features.Text(), "answer": tfds.features.Text(), "terms": np.int32}
            ),
        )

    def make_splits(self, config):
        return make_splits(config)
