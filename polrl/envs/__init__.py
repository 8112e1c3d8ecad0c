"""Text environments: what a multi-turn rollout (``polrl.collectors.turns``) talks to.

A trajectory is the prompt, then turns: the environment's observation, the model's generated
tokens. The environment is asked twice:

    reset(example)  -> observation tokens          before turn 0 (may be empty)
    step(tokens)    -> (observation tokens, reward, done)
                                                   after each turn, on the tokens the model
                                                   generated in it (a turn ends at EOS, at one
                                                   of the environment's stop sequences — the
                                                   call-end of a tool call — or at the
                                                   collector's per-turn budget)

``done`` means the trajectory is over: no observation follows and no further turn is played.
The trajectory's reward is the sum of the rewards ``step`` returned (an outcome environment pays
0 until ``done``); a trajectory still running after ``max_turns`` turns is truncated and keeps
what it earned. Observations are appended to the sequence (the model reads them) but are not
the model's actions: they are masked out of the loss.

Two kinds, one protocol:

* ``HostEnv`` — Python on the host (tools, verifiers on strings). ``new_episode()`` makes one
  ``Episode`` object per trajectory with ``reset(example: dict) -> Sequence[int]`` (the
  example's decoded dict) and ``step(tokens: Sequence[int]) -> (Sequence[int], float, bool)``
  (the turn's tokens, EOS or stop sequence included). A ``step`` that raises — a tool call
  that fails — or runs past ``step_timeout_s`` gives that turn ``error_observation`` (reward 0,
  not done) and the rollout goes on (``polrl.envs.stepping``).
* ``DeviceEnv`` — pure jittable functions over the K trajectories at once:
  ``reset(rows) -> (state, obs_ko, obs_valid_ko)`` and ``step(state, tokens_kn, mask_kn) ->
  (state, obs_ko, obs_valid_ko, reward_k, done_k)``, with int observations [K, O], bool masks
  [K, O] (right-padded), float rewards [K], bool done [K]. The whole rollout then compiles
  into the training step.

Both declare ``observation_len`` (O, the longest observation: a static width) and
``stop_sequences``. Anything an environment returns with the wrong type or shape is a one-line
``ValueError`` naming the environment.

Environments: ``calculator`` (a calculator tool for the character tokenizer). Configs name a
factory ``factory(task, **kwargs)`` of this package by its name (``get``).
"""
from polrl.envs.calculator import calculator
from polrl.envs.protocol import DeviceEnv, Episode, HostEnv
from polrl.envs.stepping import Stepper

__all__ = ["DeviceEnv", "Episode", "HostEnv", "Stepper", "calculator", "get"]

FACTORIES = ("calculator",)


def get(name: str):
    """The environment factory called ``name``, with an error listing the valid names."""
    if name not in FACTORIES:
        raise ValueError(f"unknown environment {name!r}; polrl.envs has {list(FACTORIES)}")
    return globals()[name]
