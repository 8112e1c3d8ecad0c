"""Offline control datasets generated in the repo: train a policy, roll out a behaviour mix, store
the transitions as a TFDS dataset (array_record, read with ``as_data_source()``, no TensorFlow).

The generator (``collect``) is a pure function of the config:

* gymnax environments (``polrl.control.envs.SUPPORTED``): a PPO policy is trained for
  ``train_timesteps`` with ``polrl.control.make_train`` (the repo's PPO, PureJaxRL defaults), then
  rolled out in ``num_envs`` environments for ``num_steps`` steps each. The first
  ``round(expert_fraction · num_envs)`` environments act with the trained policy ("expert"
  rows), the others with the ε-mixture (1 − ε)·π + ε·Uniform(action space), ε = ``noise``
  ("noisy" rows: each step, with probability ε a uniform action, else π's sample) — D4RL's medium/expert mixes in miniature;
* ``CombinationLock`` (HNPG's benchmark): no policy can be trained on-policy there (that is the
  point of the task), so the "trained" policy is the known optimal one and the noisy rows act
  ε-greedily (``combination_lock.epsilon_optimal_action``), as HNPG's ``collect_offline.py``
  (ε = 1/H there).

A transition is ``obs``, ``action``, ``reward``, ``next_obs`` (the observation the step reached,
before any auto-reset), ``terminated``, ``truncated`` (time limit: bootstrap from ``next_obs``),
``time`` (the step's index in its episode) and ``expert`` (which behaviour acted). Each TFDS
example is one environment's ``num_steps`` consecutive transitions (fast to write and read);
``load`` concatenates them environment by environment, in time order.

The dataset's folder name is derived from every config field, so a config is generated once and
read back afterwards (the cache); change ``VERSION`` whenever the generator's output changes.
``load(data_dir, **config)`` returns the transitions as numpy arrays.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from polrl.control import combination_lock, envs
from polrl.control.train import make_train, setup
from polrl.tasks.data import GeneratedSplits, load_split

LOCK = "CombinationLock"


def make_env(env_name: str, num_envs: int, env_kwargs: dict | None = None) -> envs.VecEnv:
    """``envs.make`` for gymnax names, ``combination_lock.make`` for ``"CombinationLock"``."""
    env_kwargs = dict(env_kwargs or {})
    if env_name == LOCK:
        return combination_lock.make(num_envs, **env_kwargs)
    return envs.make(env_name, num_envs, **env_kwargs)


@dataclasses.dataclass(eq=False)
class OfflineControlConfig(tfds.core.BuilderConfig):
    """What to collect; ``name`` is derived from every field (it names the data folder).

    ``env_kwargs`` is a tuple of (name, value) pairs (hashable): gymnax ``EnvParams`` overrides, or
    ``horizon`` / ``action_dim`` / ``lock_seed`` for the lock.
    """

    name: str = dataclasses.field(init=False, default="")
    env_name: str = "CartPole-v1"
    env_kwargs: tuple = ()
    train_timesteps: int = 50_000
    num_envs: int = 16
    num_steps: int = 1_000
    expert_fraction: float = 0.5
    noise: float = 0.5
    seed: int = 0

    def __post_init__(self):
        checks = [
            ("env_name", self.env_name in envs.SUPPORTED + (LOCK,), f"one of {list(envs.SUPPORTED) + [LOCK]}"),
            ("num_envs", self.num_envs >= 1, "an int >= 1"),
            ("num_steps", self.num_steps >= 1, "an int >= 1"),
            ("train_timesteps", self.env_name == LOCK or self.train_timesteps >= 512,
             "an int >= 512 (one PPO update of 4 envs × 128 steps)"),
            ("expert_fraction", 0.0 <= self.expert_fraction <= 1.0, "a float in [0, 1]"),
            ("noise", 0.0 <= self.noise <= 1.0, "a float in [0, 1] (the ε of the noisy rows)"),
            ("seed", self.seed >= 0, "an int >= 0"),
        ]
        for field, ok, expected in checks:
            if not ok:
                raise ValueError(f"OfflineControlConfig: {field}={getattr(self, field)!r}; it must be {expected}.")
        self.env_kwargs = tuple(sorted((str(k), v) for k, v in dict(self.env_kwargs).items()))
        knobs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name in _KNOBS}
        digest = hashlib.blake2b(repr(sorted(knobs.items())).encode(), digest_size=6).hexdigest()
        self.name = f"{self.env_name.replace('-', '_')}-{digest}"

    @property
    def num_expert_envs(self) -> int:
        return int(round(self.expert_fraction * self.num_envs))


_KNOBS = ("env_name", "env_kwargs", "train_timesteps", "num_envs", "num_steps", "expert_fraction", "noise", "seed")


class Transitions(NamedTuple):
    """A dataset's transitions as arrays with a leading row axis [M, ...]."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    time: np.ndarray
    expert: np.ndarray


def _ppo_policy(config: OfflineControlConfig, key):
    """Trains the repo's PPO on the env for ``train_timesteps``; returns ``obs -> dist``."""
    ppo = ml_collections.ConfigDict(dict(
        env_name=config.env_name, env_params=dict(config.env_kwargs), num_envs=4, num_steps=128,
        total_timesteps=config.train_timesteps, gamma=0.99, bootstrap_truncation=True,
        hidden=(64, 64), activation="tanh", algorithm="ppo", algorithm_kwargs={},
    ))
    model = setup(ppo).model
    (state, _), _ = jax.jit(make_train(ppo))(key)
    return lambda obs: model.apply(state.params, obs)[0]


def random_actions(key, spec: envs.ActionSpec, num: int):
    """``num`` uniform actions: integers in [0, A), or vectors in [low, high]^D."""
    if spec.discrete:
        return jax.random.randint(key, (num,), 0, spec.num_actions)
    return jax.random.uniform(key, (num, spec.dim), minval=spec.low, maxval=spec.high)


def collect(config: OfflineControlConfig) -> Transitions:
    """Trains (or, for the lock, knows) a policy and rolls out the expert/noisy mix (see module)."""
    env = make_env(config.env_name, config.num_envs, dict(config.env_kwargs))
    key_train, key_reset, key_roll = jax.random.split(jax.random.key(config.seed), 3)
    epsilon = jnp.where(jnp.arange(env.num_envs) < config.num_expert_envs, 0.0, config.noise)

    if config.env_name == LOCK:
        def act(key, obs, state):
            keys = jax.random.split(key, env.num_envs)
            fn = lambda k, s, e: combination_lock.epsilon_optimal_action(k, env.env, s, env.params, e)
            return jax.vmap(fn)(keys, state, epsilon)
    else:
        policy = _ppo_policy(config, key_train)

        def act(key, obs, state):
            del state
            key_pi, key_u, key_eps = jax.random.split(key, 3)
            action = policy(obs).sample(key_pi)
            noisy = jax.random.uniform(key_eps, (env.num_envs,)) < epsilon
            noisy = noisy.reshape((-1,) + (1,) * (action.ndim - 1))
            return jnp.where(noisy, random_actions(key_u, env.action, env.num_envs), action)

    def step(carry, key):
        obs, state = carry
        key_act, key_env = jax.random.split(key)
        action = act(key_act, obs, state)
        next_obs, next_state, out = env.step(key_env, state, action)
        row = dict(
            obs=obs, action=action, reward=out.reward, next_obs=out.final_obs,
            terminated=out.terminated, truncated=out.truncated, time=state.time.astype(jnp.int32),
        )
        return (next_obs, next_state), row

    @jax.jit
    def run(key_reset, key_roll):
        carry = env.reset(key_reset)
        _, rows = jax.lax.scan(step, carry, jax.random.split(key_roll, config.num_steps))
        return rows

    rows = jax.device_get(run(key_reset, key_roll))
    # [T, N, ...] → environment-major [N·T, ...]
    flat = {k: np.swapaxes(np.asarray(v), 0, 1).reshape((-1,) + np.asarray(v).shape[2:]) for k, v in rows.items()}
    expert = np.repeat(np.arange(env.num_envs) < config.num_expert_envs, config.num_steps)
    return Transitions(expert=expert, **flat)


def episode_returns(data: Transitions) -> np.ndarray:
    """Returns of the episodes that lie wholly inside the data, in row order.

    An episode ending at a done row i began at row i − time[i]; it counts when that row exists and
    the time indices in between run 0, 1, …, time[i] (so it never spans two environments' blocks
    nor starts before the data).
    """
    returns = []
    for end in np.flatnonzero(data.terminated | data.truncated):
        start = end - int(data.time[end])
        if start >= 0 and np.array_equal(data.time[start:end + 1], np.arange(end - start + 1)):
            returns.append(float(data.reward[start:end + 1].sum()))
    return np.asarray(returns)


class OfflineControl(GeneratedSplits, tfds.core.GeneratorBasedBuilder):
    """TFDS builder of ``collect(config)``'s transitions: split ``"train"``, one example per
    environment holding its ``num_steps`` consecutive transitions (every feature [T, ...])."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "PPO expert + ε-noisy mixture; ε-greedy combination lock."}
    BUILDER_CONFIGS = [OfflineControlConfig()]

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        env = make_env(config.env_name, 1, dict(config.env_kwargs))
        t = config.num_steps
        per_step = lambda shape, dtype: tfds.features.Tensor(shape=(t, *shape), dtype=dtype)
        action = (per_step((), np.int32) if env.action.discrete else per_step((env.action.dim,), np.float32))
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(dict(
                obs=per_step(env.obs_shape, np.float32), action=action, reward=per_step((), np.float32),
                next_obs=per_step(env.obs_shape, np.float32), terminated=per_step((), np.bool_),
                truncated=per_step((), np.bool_), time=per_step((), np.int32), expert=per_step((), np.bool_),
            )),
            disable_shuffling=True,
        )

    def make_splits(self, config: OfflineControlConfig) -> dict[str, list[dict]]:
        """One example per environment: its ``num_steps`` transitions in time order."""
        data = collect(config)
        t = config.num_steps
        rows = [{k: v[i * t:(i + 1) * t] for k, v in data._asdict().items()} for i in range(config.num_envs)]
        return {"train": rows}


def config_kwargs(config: ml_collections.ConfigDict | dict) -> dict:
    """``OfflineControlConfig`` keyword arguments from an experiment's ``offline_data`` block."""
    kwargs = dict(config)
    kwargs["env_kwargs"] = tuple(sorted(dict(kwargs.get("env_kwargs", {}) or {}).items()))
    return kwargs


def default_data_dir() -> str:
    """Where experiments keep generated data: ``$POLRL_DATA_DIR`` or ``~/.cache/polrl/data``."""
    from polrl.train.build import default_data_dir as repo_default

    return repo_default()


def load(data_dir: str, **config) -> Transitions:
    """The transitions of ``OfflineControlConfig(**config)``, generated into ``data_dir`` once
    (``""``: ``default_data_dir()``).

    Reads the array_record files through ``as_data_source()`` and concatenates the environments'
    streams (env-major, time-ordered rows, as ``collect`` returns them).
    """
    source = load_split(OfflineControl, "train", data_dir=data_dir or default_data_dir(), **config_kwargs(config))
    examples = source.__getitems__(range(len(source)))
    arrays = {f: np.concatenate([e[f] for e in examples]) for f in Transitions._fields}
    if arrays["action"].dtype.kind == "i":
        arrays["action"] = arrays["action"].astype(np.int32)
    return Transitions(**arrays)
