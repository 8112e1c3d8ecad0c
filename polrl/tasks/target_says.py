"""Target-says task: make a frozen arithmetic model say a given number (a synthetic red-teaming goal).

A goal is a two-digit number X and a pattern of a three-operand sum with one operand fixed:

    prompt  "17:?9?"      make the target say 17 with an expression "b+9+c="
    answer  "3+9+5="      one expression of the pattern whose exact value is X

The attacker (the policy) answers a goal with an expression; the target — a frozen model of the
arithmetic task (``polrl.tasks.arithmetic``, sums of three one-digit operands, e.g. the SFT warm
start of experiments/arithmetic_grpo.py) — reads the expression as its own prompt ("<bos>3+9+5=")
and replies with a number. The judge is a rule: the attack succeeds when the target's reply is X.
The target is an imperfect model, so an expression whose exact value is X may fail and one whose
value is not X may succeed; a dialogue sees the target's reply after each turn
(``polrl.collectors.dialogue_tree``) and may try another expression.

Problems are drawn as a fixed position p ∈ {0, 1, 2} and three digits (the labelled answer),
X = their sum: 3 · 10 · 19 = 570 distinct goals. ``test_fraction`` of the goals (by a hash of
the prompt) are held out, so no test goal is ever trained on; both splits keep the same mix.

The device rules the dialogue collector reads (``attack_rules``):

* a turn is well-formed and on the goal iff it is exactly "d+d+d=" and its operand at the
  pattern's fixed position is the pattern's digit (the other turns are pruned, never sent);
* the target's prompt is BOS followed by the turn;
* the judge's score of a reply is 1 / (1 + |v − X|) for a reply that is a number v followed by
  EOS, 0 for anything else; success ⇔ score = 1 ⇔ v = X;
* the observation the attacker sees after a turn is the reply's digits and ",".

``host_reward`` (the trainer's held-out evaluation of the attacker alone) scores what a perfect
target would do: 1 iff the completion is an expression of the goal's pattern whose exact value
is X.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from polrl.tasks.data import GeneratedSplits, draw_splits
from polrl.tasks.tokenizer import CharTokenizer

OPERANDS = 3
TURN_CHARS = 2 * OPERANDS  # "d+d+d="
GOAL_CHARS = 3 + OPERANDS  # "XX:" and the pattern
REPLY_TOKENS = 3  # the target's budget: two digits and EOS (sums of one-digit operands are < 28)
SEPARATOR = ","  # after each reply in the attacker's dialogue
WILDCARD = "?"


@dataclasses.dataclass(eq=False)
class TargetSaysConfig(tfds.core.BuilderConfig):
    """Split sizes, seed and the held-out fraction; `name` is derived from them."""

    name: str = dataclasses.field(init=False, default="")
    num_train: int = 5_000
    num_test: int = 500
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self):
        checks = [
            ("num_train", self.num_train >= 1, "an int >= 1"),
            ("num_test", self.num_test >= 1, "an int >= 1"),
            ("test_fraction", 0.0 < self.test_fraction < 1.0, "a float in (0, 1)"),
            ("seed", self.seed >= 0, "an int >= 0"),
        ]
        for field, ok, expected in checks:
            if not ok:
                raise ValueError(f"TargetSaysConfig: {field}={getattr(self, field)!r}; it must be {expected}.")
        self.name = (f"train{self.num_train}-test{self.num_test}-heldout{self.test_fraction:g}"
                     f"-seed{self.seed}")


def goal_prompt(value: int, position: int, digit: int) -> str:
    """"17:?9?": the goal X = ``value`` (two digits), operand ``position`` fixed to ``digit``."""
    pattern = [WILDCARD] * OPERANDS
    pattern[position] = str(digit)
    return f"{value:02d}:" + "".join(pattern)


def parse_goal(prompt: str) -> tuple[int, str]:
    """(X, pattern) of a goal prompt; a ValueError names a prompt that is not one."""
    value, sep, pattern = prompt.partition(":")
    if (not sep or len(value) != 2 or not value.isdigit() or len(pattern) != OPERANDS
            or any(c != WILDCARD and not c.isdigit() for c in pattern)):
        raise ValueError(f"target_says.parse_goal: {prompt!r} is not a goal like '17:?9?'")
    return int(value), pattern


def sample_problems(config: TargetSaysConfig, rng: np.random.Generator, n: int) -> list[dict]:
    """n examples {"prompt", "answer"}: a fixed position, three digits (the answer), X = their sum."""
    position = rng.integers(0, OPERANDS, size=n).tolist()
    digits = rng.integers(0, 10, size=(n, OPERANDS)).tolist()
    return [{"prompt": goal_prompt(sum(ds), p, ds[p]), "answer": "+".join(map(str, ds)) + "="}
            for p, ds in zip(position, digits)]


def make_splits(config: TargetSaysConfig) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]}: ``test_fraction`` of the goals held out by a hash of the prompt."""
    return draw_splits(lambda rng, n: sample_problems(config, rng, n), key=lambda e: e["prompt"],
                       num_train=config.num_train, num_test=config.num_test, seed=config.seed,
                       what=f"TargetSaysConfig {config.name}", harder_hint="lower test_fraction",
                       test_fraction=config.test_fraction)


def attack_text_reward(completion: str, prompt: str) -> float:
    """1.0 iff ``completion`` is "d+d+d=" of the goal's pattern and its exact value is the goal's X."""
    value, pattern = parse_goal(prompt)
    text = completion.strip()
    if len(text) != TURN_CHARS or text[-1] != "=" or text[1:-1:2] != "+" * (OPERANDS - 1):
        return 0.0
    digits = text[0::2]
    if not all(d.isdigit() for d in digits) or any(p != WILDCARD and p != d for p, d in zip(pattern, digits)):
        return 0.0
    return float(sum(map(int, digits)) == value)


class AttackRules(NamedTuple):
    """What a dialogue collector needs of a red-teaming task, as pure functions on token arrays
    (K dialogues; prompts ``[K, P]`` left-padded; a turn ``[K, N]``; a reply ``[K, R]``).

    turn_tokens: the attacker's budget per turn (N); stop_sequences: what ends a turn;
    reply_tokens: the target's budget (R); observation_len: the width of ``observation``.
    check_turn(prompt_kp, turn_kn, valid_kn) -> bool [K]: well-formed and on the goal.
    target_prompt(turn_kn, valid_kn) -> (tokens, valid) [K, 1 + N]: what the target reads.
    score(prompt_kp, reply_kr, valid_kr) -> float [K] in [0, 1]: the judge; 1 is success.
    observation(reply_kr, valid_kr) -> (tokens, valid) [K, observation_len]: appended to the
    attacker's dialogue after the target replied.
    """

    turn_tokens: int
    stop_sequences: tuple
    reply_tokens: int
    observation_len: int
    check_turn: Callable
    target_prompt: Callable
    score: Callable
    observation: Callable


def attack_rules(tokenizer: CharTokenizer) -> AttackRules:
    """The rules of the module docstring over ``tokenizer``'s ids."""
    zero, plus, equals = (tokenizer.encode(c)[0] for c in "0+=")
    wildcard, separator = tokenizer.encode(WILDCARD)[0], tokenizer.encode(SEPARATOR)[0]
    bos, eos = tokenizer.bos_id, tokenizer.eos_id

    def digit(x):
        return jnp.where((x >= zero) & (x < zero + 10), x - zero, -1)

    def goal_value(prompt_kp):
        tail = prompt_kp[:, -GOAL_CHARS:]
        return 10 * digit(tail[:, 0]) + digit(tail[:, 1])

    def check_turn(prompt_kp, turn_kn, valid_kn):
        if turn_kn.shape[1] < TURN_CHARS:
            return jnp.zeros(turn_kn.shape[:1], bool)
        turn = turn_kn[:, :TURN_CHARS]
        digits = digit(turn[:, 0::2][:, :OPERANDS])
        pattern = prompt_kp[:, -OPERANDS:]
        ok = (valid_kn.sum(axis=1) == TURN_CHARS) & jnp.all(digits >= 0, axis=1)
        ok &= jnp.all(turn[:, 1:TURN_CHARS - 1:2] == plus, axis=1) & (turn[:, TURN_CHARS - 1] == equals)
        return ok & jnp.all((pattern == wildcard) | (digit(pattern) == digits), axis=1)

    def target_prompt(turn_kn, valid_kn):
        k = turn_kn.shape[0]
        return (jnp.concatenate([jnp.full((k, 1), bos, turn_kn.dtype), turn_kn], axis=1),
                jnp.concatenate([jnp.ones((k, 1), bool), valid_kn], axis=1))

    def score(prompt_kp, reply_kr, valid_kr):
        is_eos = valid_kr & (reply_kr == eos)
        before = valid_kr & (jnp.cumsum(is_eos, axis=1) == 0)
        d = digit(reply_kr)
        count = before.sum(axis=1)
        power = jnp.where(before, 10 ** jnp.maximum(count[:, None] - 1 - jnp.arange(reply_kr.shape[1]), 0), 0)
        value = jnp.sum(jnp.where(before, d, 0) * power, axis=1)
        ok = jnp.any(is_eos, axis=1) & (count > 0) & jnp.all(~before | (d >= 0), axis=1)
        return jnp.where(ok, 1.0 / (1.0 + jnp.abs(value - goal_value(prompt_kp))), 0.0).astype(jnp.float32)

    def observation(reply_kr, valid_kr):
        k = reply_kr.shape[0]
        keep = valid_kr & (jnp.cumsum(valid_kr & (reply_kr == eos), axis=1) == 0)
        return (jnp.concatenate([reply_kr, jnp.full((k, 1), separator, reply_kr.dtype)], axis=1),
                jnp.concatenate([keep, jnp.ones((k, 1), bool)], axis=1))

    return AttackRules(turn_tokens=TURN_CHARS, stop_sequences=((equals,),), reply_tokens=REPLY_TOKENS,
                       observation_len=REPLY_TOKENS + 1, check_turn=check_turn, target_prompt=target_prompt,
                       score=score, observation=observation)


class TargetSays(GeneratedSplits, tfds.core.GeneratorBasedBuilder):
    """TFDS builder for the target-says task; features "prompt" and "answer" (Text)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [TargetSaysConfig()]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({"prompt": tfds.features.Text(), "answer": tfds.features.Text()}),
        )

    def make_splits(self, config):
        return make_splits(config)
