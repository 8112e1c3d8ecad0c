"""Stepping a turn's host episodes: failures and timeouts become the environment's error
observation, wrong outputs become a one-line error naming the environment."""
from __future__ import annotations

import threading
import time
from typing import Sequence

from polrl.envs.protocol import HostEnv, check_step


class Stepper:
    """Steps the episodes of one rollout, turn after turn.

    A ``step`` that raises gives its turn ``env.error_observation`` (reward 0, not done: the
    trajectory goes on and the model sees the error). With ``env.step_timeout_s`` the turn's
    steps run on daemon threads started together; one still running after the timeout is
    abandoned for that turn (error observation), its thread keeps running, and its episode is
    not stepped again until that thread has returned (a later turn that finds it still busy
    also observes the error). What an abandoned step returns is discarded.
    """

    def __init__(self, env: HostEnv, vocab_size: int):
        self.env, self.vocab_size = env, vocab_size
        self._busy: dict[int, threading.Thread] = {}

    def _checked(self, out):
        return check_step(self.env.name, out, self.env.observation_len, self.vocab_size)

    def _error(self):
        return list(self.env.error_observation), 0.0, False, True

    def step(self, episodes: Sequence, rows: Sequence[int], tokens: Sequence[Sequence[int]]) -> list[tuple]:
        """``(observation, reward, done, failed)`` for ``episodes[rows[i]].step(tokens[i])``."""
        if self.env.step_timeout_s is None:
            results = []
            for row, toks in zip(rows, tokens):
                try:
                    out = episodes[row].step(toks)
                except Exception:  # a failed tool call: the turn observes the error
                    results.append(self._error())
                    continue
                results.append((*self._checked(out), False))
            return results
        return self._step_with_timeout(episodes, rows, tokens)

    def _step_with_timeout(self, episodes, rows, tokens) -> list[tuple]:
        outputs: dict[int, object] = {}

        def run(row, toks):
            try:
                outputs[row] = ("ok", episodes[row].step(toks))
            except Exception:
                outputs[row] = ("failed", None)

        started = {}
        for row, toks in zip(rows, tokens):
            if row in self._busy and self._busy[row].is_alive():
                continue  # its last step has not returned yet
            thread = threading.Thread(target=run, args=(row, toks), daemon=True)
            thread.start()
            started[row] = thread
        deadline = time.monotonic() + self.env.step_timeout_s
        for thread in started.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        results = []
        for row in rows:
            thread = started.get(row)
            if thread is None or thread.is_alive():
                if thread is not None:
                    self._busy[row] = thread
                results.append(self._error())
                continue
            status, out = outputs[row]
            results.append(self._error() if status == "failed" else (*self._checked(out), False))
        return results
