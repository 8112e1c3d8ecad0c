"""A calculator tool: the model writes ``<37*485>``, the environment appends ``=17945`` and a
newline, and the model goes on; a turn that does not end with ``>`` is the final answer.

One trajectory on the multiplication task (prompt ``37*485=``)::

    turn 0   model  <37*485>            (the turn stops at the call-end ``>``)
             env    =17945\\n            (observation: masked out of the loss)
    turn 1   model  17945<eos>          (no call: the final answer; done, reward 1)

Rules of ``step`` on a turn's tokens:

* the turn ends with ``>`` (the stop sequence): the text after its last ``<`` is evaluated as an
  integer expression over ``+ - *`` and parentheses (``polrl.tasks.parse_expression``, no
  ``eval``) and the observation is ``=`` + the value + ``\\n`` (reward 0, not done). A call that
  does not parse, has no ``<``, or whose value has more than ``max_result_chars`` characters
  raises, so the collector gives the turn the error observation ``=error\\n``;
* otherwise (EOS, or the turn's budget ran out): the turn's text (up to EOS) is the final
  answer, scored by the task's verifier (``task.host_reward``); done.

A call costs at most one parse of a turn's text (bounded by the per-turn budget), so there is no
timeout by default. Made for the character tokenizer (``<``, ``>``, ``=``, digits, newline are
one token each).
"""
from __future__ import annotations

from typing import Sequence

from polrl.envs.protocol import HostEnv
from polrl.tasks.rewards import parse_expression

CALL_START, CALL_END = "<", ">"
ERROR = "=error\n"


def observation_text(value: int) -> str:
    """What the environment appends after a call that evaluates to ``value``."""
    return f"={value}\n"


class CalculatorEpisode:
    """One trajectory: remembers its example, evaluates calls, scores the final answer."""

    def __init__(self, task, max_result_chars: int):
        self.tokenizer, self.verifier, self.max_result_chars = task.tokenizer, task.host_reward, max_result_chars
        self.call_end = task.tokenizer.encode(CALL_END)
        self.example = None

    def reset(self, example: dict) -> list[int]:
        self.example = example
        return []

    def step(self, tokens: Sequence[int]) -> tuple[list[int], float, bool]:
        tokens = list(tokens)
        text = self.tokenizer.decode(tokens)
        if tokens[-len(self.call_end):] == self.call_end:
            return self.tokenizer.encode(observation_text(self.evaluate(text))), 0.0, False
        return [], float(self.verifier([text], [self.example])[0]), True

    def evaluate(self, text: str) -> int:
        """The value of the call at the end of ``text`` (``…<expression>``); raises ValueError."""
        start = text.rfind(CALL_START)
        if start < 0:
            raise ValueError(f"calculator: the call {text!r} has no {CALL_START!r}")
        value, _ = parse_expression(text[start + 1 : -len(CALL_END)])
        if len(str(value)) > self.max_result_chars:
            raise ValueError(f"calculator: the value of {text!r} has more than {self.max_result_chars} characters")
        return value


def calculator(task, *, max_result_chars: int = 8, step_timeout_s: float | None = None) -> HostEnv:
    """The calculator environment for ``task`` (its tokenizer and verifier); observations are
    at most ``max_result_chars`` + 2 tokens (``=``, the value, the newline)."""
    if max_result_chars < len(ERROR) - 2:
        raise ValueError(f"calculator: max_result_chars={max_result_chars} must be >= {len(ERROR) - 2} so the "
                         f"error observation {ERROR!r} fits")
    tokenizer = task.tokenizer
    return HostEnv(
        name="calculator",
        new_episode=lambda: CalculatorEpisode(task, max_result_chars),
        observation_len=max_result_chars + 2,
        error_observation=tuple(tokenizer.encode(ERROR)),
        stop_sequences=(tuple(tokenizer.encode(CALL_END)),),
        step_timeout_s=step_timeout_s,
    )
