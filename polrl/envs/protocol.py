"""The two kinds of text environment (see ``polrl.envs`` for the protocol) and the checks of
what they return."""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class Episode(Protocol):
    """One trajectory's environment on the host (a fresh object per trajectory)."""

    def reset(self, example: dict) -> Sequence[int]:
        """Observation tokens shown after the prompt, before the first turn (may be empty)."""

    def step(self, tokens: Sequence[int]) -> tuple[Sequence[int], float, bool]:
        """The turn's generated tokens → (observation tokens, reward, done)."""


@dataclasses.dataclass(frozen=True)
class HostEnv:
    """A text environment run on the host, in Python: one ``Episode`` per trajectory.

    Attributes:
      name: names the environment in errors and configs.
      new_episode: ``() -> Episode``, called once per trajectory.
      observation_len: O, the most tokens one observation may have (a static width).
      error_observation: what a turn observes when its ``step`` raised or timed out.
      stop_sequences: token sequences that end a turn (the call-end of a tool call).
      step_timeout_s: a ``step`` still running this long after the turn's steps started is
        abandoned for that turn (None: no limit).
    """

    name: str
    new_episode: Callable[[], Episode]
    observation_len: int
    error_observation: tuple[int, ...]
    stop_sequences: tuple[tuple[int, ...], ...] = ()
    step_timeout_s: float | None = None

    def __post_init__(self):
        check_static(self)
        if len(self.error_observation) > self.observation_len:
            raise ValueError(f"environment {self.name!r}: error_observation has {len(self.error_observation)} "
                             f"tokens, more than observation_len={self.observation_len}; raise observation_len")
        if self.step_timeout_s is not None and not self.step_timeout_s > 0:
            raise ValueError(f"environment {self.name!r}: step_timeout_s={self.step_timeout_s} must be > 0 or None")


@dataclasses.dataclass(frozen=True)
class DeviceEnv:
    """A text environment of pure, jittable functions over K trajectories at once.

    Attributes:
      name: names the environment in errors and configs.
      reset: ``(rows) -> (state, obs_ko, obs_valid_ko)``; ``rows`` holds the K trajectories'
        data arrays (``prompt_bp``, ``prompt_valid_bp``, ``answer_ba``, ``answer_valid_ba``,
        each repeated for the group), ``state`` is any pytree whose leaves have K rows.
      step: ``(state, tokens_kn, mask_kn) -> (state, obs_ko, obs_valid_ko, reward_k, done_k)``;
        ``tokens_kn`` are the turn's generated tokens (left-aligned, ``mask_kn`` marks them).
        It is applied to every row; rows already done generated nothing and what is returned
        for them is ignored. ``state`` keeps its structure and shapes from turn to turn.
      observation_len: O, the width of ``obs_ko``.
      stop_sequences: token sequences that end a turn.
    """

    name: str
    reset: Callable[[dict], tuple[Any, jax.Array, jax.Array]]
    step: Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]]
    observation_len: int
    stop_sequences: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self):
        check_static(self)


def check_static(env) -> None:
    """The static facts every environment declares: a positive observation width and stop
    sequences as non-empty tuples of ints."""
    if not isinstance(env.observation_len, int) or env.observation_len < 1:
        raise ValueError(f"environment {env.name!r}: observation_len={env.observation_len!r} must be an int >= 1")
    ok = isinstance(env.stop_sequences, tuple) and all(
        isinstance(s, tuple) and s and all(isinstance(t, int) for t in s) for s in env.stop_sequences)
    if not ok:
        raise ValueError(f"environment {env.name!r}: stop_sequences={env.stop_sequences!r} must be a tuple of "
                         f"non-empty tuples of token ids, e.g. ((id_of_'>',),)")


def check_observation(name: str, where: str, obs, width: int, vocab_size: int) -> list[int]:
    """``obs`` as a list of token ids, or a one-line error naming the environment."""
    ids = np.asarray(obs) if isinstance(obs, (list, tuple, np.ndarray)) else None
    if ids is not None and ids.size == 0:
        return []
    if ids is None or ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"environment {name!r}: {where} returned the observation {obs!r}; it must be a 1-D "
                         f"sequence of int token ids")
    if len(ids) > width:
        raise ValueError(f"environment {name!r}: {where} returned an observation of {len(ids)} tokens, more than "
                         f"its observation_len={width}; raise observation_len or shorten the observation")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"environment {name!r}: {where} returned token ids outside [0, {vocab_size}): "
                         f"{ids.tolist()}")
    return ids.tolist()


def check_step(name: str, out, width: int, vocab_size: int) -> tuple[list[int], float, bool]:
    """A host ``step``'s ``(observation, reward, done)``, checked; one-line errors name the
    environment."""
    if not isinstance(out, tuple) or len(out) != 3:
        raise ValueError(f"environment {name!r}: step returned {type(out).__name__}; it must return a tuple "
                         f"(observation tokens, reward, done)")
    obs, reward, done = out
    obs = check_observation(name, "step", obs, width, vocab_size)
    if isinstance(reward, (bool, np.bool_)) or not isinstance(reward, numbers.Real) or not math.isfinite(reward):
        raise ValueError(f"environment {name!r}: step returned the reward {reward!r}; it must be a finite float")
    if not isinstance(done, (bool, np.bool_)):
        raise ValueError(f"environment {name!r}: step returned done={done!r}; it must be a bool")
    return obs, float(reward), bool(done)


def check_device_outputs(name: str, where: str, rows: int, width: int, obs_ko, obs_valid_ko,
                         reward_k=None, done_k=None) -> None:
    """Shapes and dtypes of a device environment's outputs (checked while tracing)."""
    expected = [("observation", obs_ko, (rows, width), jnp.integer),
                ("observation mask", obs_valid_ko, (rows, width), jnp.bool_)]
    if where == "step":
        expected += [("reward", reward_k, (rows,), jnp.floating), ("done", done_k, (rows,), jnp.bool_)]
    for what, x, shape, kind in expected:
        if getattr(x, "shape", None) != shape or not jnp.issubdtype(x.dtype, kind):
            got = f"{getattr(x, 'shape', type(x).__name__)} {getattr(x, 'dtype', '')}".strip()
            raise ValueError(f"environment {name!r}: {where} returned the {what} as {got}; expected shape "
                             f"{list(shape)} of {jnp.dtype(kind).name if kind is jnp.bool_ else kind.__name__}")
