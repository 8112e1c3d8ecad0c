"""Reward functions: host-side on decoded strings, device-side on token arrays.

Every host reward returns a Python float in {0.0, 1.0}; `check_rewards` validates a
batch of rewards before it reaches the learner.
"""
from __future__ import annotations

import collections
import re
from collections.abc import Sequence
from decimal import Decimal

import jax
import jax.numpy as jnp
import numpy as np

# A number: optional sign, then either comma-grouped thousands ("1,234,567") or
# plain digits, then an optional decimal part. A "-" directly after a digit or ")"
# is a subtraction, not a sign, so "10-5" yields "10" and "5".
_NUMBER = re.compile(
    r"(?:(?<![0-9)])-)?(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?"
)
# Tokens of an arithmetic expression: integers, operators, parentheses, whitespace.
_TOKEN = re.compile(r"[0-9]+|[-+*()]|\s+|.", re.DOTALL)
_MAX_PAREN_DEPTH = 32


def exact_match(completion: str, answer: str) -> float:
    """1.0 iff `completion.strip() == answer.strip()`, else 0.0."""
    return float(completion.strip() == answer.strip())


def extract_number(text: str) -> str | None:
    """The last number in `text`, with thousands commas removed; None if there is none.

    A number is an optional "-" (only where it cannot be a subtraction, i.e. not
    right after a digit or ")"), then digits that are either comma-grouped in
    threes ("1,234") or plain, then an optional ".digits". Examples:
    "x = -1,234." -> "-1234"; "3.5 apples" -> "3.5"; "10-5" -> "5".
    """
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    return matches[-1].replace(",", "")


def numeric_match(completion: str, answer: str) -> float:
    """1.0 iff the last number of `completion` equals the last number of `answer`.

    Numbers are compared exactly as decimals, so "42.0" matches "42" and "1,234"
    matches "1234". A completion without a number scores 0.0; an answer without a
    number is a data error.
    """
    expected = extract_number(answer)
    if expected is None:
        raise ValueError(
            f"numeric_match: answer {answer!r} contains no number; numeric_match "
            "needs a numeric reference answer."
        )
    got = extract_number(completion)
    return float(got is not None and Decimal(got) == Decimal(expected))


def format_reward(completion: str, pattern: str | re.Pattern) -> float:
    """1.0 iff `re.fullmatch(pattern, completion)` matches the whole completion.

    Use an inline flag such as "(?s)" in `pattern` to let "." match newlines.
    """
    return float(re.fullmatch(pattern, completion) is not None)


def parse_expression(text: str) -> tuple[int, list[int]]:
    """Evaluates an integer expression; returns (value, the integer literals used).

    Grammar (whitespace between tokens is ignored; no unary minus, no other
    operators):

        expr   := term (("+" | "-") term)*
        term   := factor ("*" factor)*
        factor := INT | "(" expr ")"
        INT    := "0" | a digit 1-9 followed by digits   (no leading zeros)

    Parentheses nest at most 32 deep. Raises ValueError naming the problem for
    anything outside the grammar. Never calls `eval`.
    """
    tokens = [t for t in _TOKEN.findall(text) if not t.isspace()]
    position = 0
    literals: list[int] = []

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        token = peek()
        if token is None:
            raise ValueError(f"parse_expression: {text!r} ends early.")
        position += 1
        return token

    def factor(depth: int) -> int:
        token = take()
        if token == "(":
            if depth >= _MAX_PAREN_DEPTH:
                raise ValueError(
                    f"parse_expression: {text!r} nests parentheses deeper than "
                    f"{_MAX_PAREN_DEPTH}."
                )
            value = expr(depth + 1)
            if take() != ")":
                raise ValueError(f"parse_expression: {text!r} has an unclosed '('.")
            return value
        if token[0] in "0123456789":
            if len(token) > 1 and token[0] == "0":
                raise ValueError(
                    f"parse_expression: {text!r} has the number {token!r} with a "
                    "leading zero."
                )
            literals.append(int(token))
            return int(token)
        raise ValueError(
            f"parse_expression: {text!r} has {token!r} where a number or '(' "
            "should be."
        )

    def term(depth: int) -> int:
        value = factor(depth)
        while peek() == "*":
            take()
            value *= factor(depth)
        return value

    def expr(depth: int) -> int:
        value = term(depth)
        while peek() in ("+", "-"):
            sign = 1 if take() == "+" else -1
            value += sign * term(depth)
        return value

    value = expr(0)
    if position != len(tokens):
        raise ValueError(
            f"parse_expression: {text!r} has unexpected {tokens[position]!r} after "
            "a complete expression."
        )
    return value, literals


def countdown_reward(completion: str, numbers: Sequence[int], target: int) -> float:
    """1.0 iff `completion` is an expression (see `parse_expression`) over + - * and
    parentheses that uses only literals from `numbers`, each at most as often as it
    appears there, and evaluates exactly to `target`; else 0.0.
    """
    try:
        value, used = parse_expression(completion)
    except ValueError:
        return 0.0
    available = collections.Counter(int(n) for n in numbers)
    uses_allowed = not collections.Counter(used) - available
    return float(uses_allowed and value == int(target))


def token_exact_match(
    response_bt: jax.Array,
    mask_bt: jax.Array,
    answer_ba: jax.Array,
    answer_valid_ba: jax.Array,
) -> jax.Array:
    """float32 [B]: 1 iff the response equals the answer up to and including EOS.

    Row b matches iff the answer has at least one valid token and, for every t with
    `answer_valid_ba[b, t]`, `mask_bt[b, t]` is set and
    `response_bt[b, t] == answer_ba[b, t]`. The answer is right-padded and its last
    valid token is EOS, so this says the response's first EOS sits where the
    answer's does and every token before it agrees; tokens after that EOS are
    ignored. T and A may differ; answer tokens beyond T cannot be matched. Jittable.
    """
    width = max(response_bt.shape[1], answer_ba.shape[1])

    def widen(x, fill):
        return jnp.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=fill)

    response = widen(response_bt, 0)
    mask = widen(mask_bt.astype(bool), False)
    answer = widen(answer_ba, 0)
    valid = widen(answer_valid_ba.astype(bool), False)
    agree = ~valid | (mask & (response == answer))
    return (jnp.all(agree, axis=1) & jnp.any(valid, axis=1)).astype(jnp.float32)


def check_rewards(reward_b, batch_size: int, source: str) -> np.ndarray:
    """Returns `reward_b` as a float32 numpy array after checking it on the host.

    Raises ValueError naming `source` (the reward function) if the shape is not
    `(batch_size,)` or if any reward is NaN or infinite (listing those rows).
    """
    reward = np.asarray(reward_b, dtype=np.float32)
    if reward.shape != (batch_size,):
        raise ValueError(
            f"{source} returned rewards of shape {reward.shape}; expected "
            f"[batch_size] = ({batch_size},), one reward per completion."
        )
    bad_rows = np.flatnonzero(~np.isfinite(reward))
    if bad_rows.size:
        raise ValueError(
            f"{source} returned non-finite rewards at rows {bad_rows.tolist()} "
            f"(values {reward[bad_rows].tolist()}); rewards must be finite."
        )
    return reward
