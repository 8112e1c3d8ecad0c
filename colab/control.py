# %% [markdown]
# # polrl classic control: PPO on CartPole, MAPPO on MPE spread
#
# A guided tour of `polrl.control`: vectorized JAX environments (gymnax, JaxMARL) and the same
# transforms as the language-model trainers, each run one jitted call with every seed vmapped.
#
# 1. **PPO on CartPole-v1** (`experiments/cartpole_ppo.py`, PureJaxRL's configuration);
# 2. **MAPPO on MPE simple_spread_v3** (`experiments/mpe_spread_mappo.py`): 3 agents, a shared
#    actor over each agent's observation, a centralised critic over all of them.
#
# Both plot the mean episode return over seeds (± one std) against environment steps. Runs on a
# CPU runtime; the full configs take minutes on a CPU, the smoke setting (`POLRL_SMOKE=1`) seconds.
#
# This file is the reviewable twin of `control.ipynb` (same cells, percent format).

# %%
# Install: run from a checkout of the polrl repository (colab/ is one level below the root).
import importlib.util
import os
import subprocess
import sys

root = os.path.abspath("..") if os.path.exists("../setup.py") else os.path.abspath(".")
if importlib.util.find_spec("polrl") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", root], check=True)
sys.path.insert(0, root)  # the experiments/ configs live at the repository root

# %%
# The two experiment configs. POLRL_SMOKE=1 (set by the test suite) runs their seconds-long variants.
import tempfile

from experiments import cartpole_ppo, mpe_spread_mappo

SMOKE = os.environ.get("POLRL_SMOKE") == "1"
configs = {"cartpole_ppo": cartpole_ppo.get_config("smoke" if SMOKE else None),
           "mpe_spread_mappo": mpe_spread_mappo.get_config("smoke" if SMOKE else None)}
for name, c in configs.items():
    print(f"{name}: {c.algorithm} on {c.env_name}, {c.num_envs} envs × {c.num_steps} steps per update, "
          f"{c.total_timesteps} environment steps, {c.num_seeds} seeds")

# %% [markdown]
# ## The environment
#
# `polrl.control.envs.make` gives N copies of a gymnax environment stepped together; `reset` and
# `step` are pure functions (jittable, vmappable), episodes restart by themselves, and a step
# reports `terminated` (the value after it is 0) apart from `truncated` (the time limit: the
# return is bootstrapped with V of `final_obs`).

# %%
import jax
import jax.numpy as jnp

from polrl.control import envs

env = envs.make(configs["cartpole_ppo"].env_name, num_envs=4)
obs, env_state = env.reset(jax.random.PRNGKey(0))
print("observation", obs.shape, "actions", env.action.num_actions, "time limit", env.params.max_steps_in_episode)
obs, env_state, step = env.step(jax.random.PRNGKey(1), env_state, jnp.zeros((4,), jnp.int32))
print("reward", step.reward, "terminated", step.terminated, "truncated", step.truncated)

# %% [markdown]
# ## Train
#
# `polrl.control.run(config, workdir)` is what `python -m polrl.launch --config experiments/NAME.py`
# runs for a control config: it trains `num_seeds` seeds in one `jit(vmap(train))` call, writes
# `workdir/metrics.jsonl` (one record per update, averaged over seeds, `mean_return_std` across
# them) and `workdir/curves.png`, and returns the summary.

# %%
from polrl.control import run

workdirs = {name: tempfile.mkdtemp(prefix=f"polrl_{name}_") for name in configs}
summaries = {}
for name, c in configs.items():
    summaries[name] = run(c, workdirs[name])["control"]
    print(name, {k: summaries[name][k] for k in ("env_steps", "num_seeds", "final_mean_return", "final_std", "wall_s")})

# %% [markdown]
# ## Returns
#
# Mean episode return over seeds (± one std) against environment steps, per run (MPE spread: the
# per-agent return). An update's `mean_return` is the return of each environment's last finished
# episode, 0 before any has finished (MPE episodes last 25 steps, longer than the smoke run). The
# figure is also saved as `returns.png` in the CartPole run's workdir.

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image

from polrl.train.metrics import read_metrics

fig, ax = plt.subplots(1, len(configs), figsize=(5.5 * len(configs), 3.5))
for a, (name, c) in zip(ax, configs.items()):
    records = read_metrics(workdirs[name])
    steps = np.array([r["step"] for r in records])
    mean = np.array([r["mean_return"] for r in records])
    std = np.array([r["mean_return_std"] for r in records])
    a.plot(steps, mean, marker="o" if len(steps) < 10 else None, label=f"mean of {c.num_seeds} seeds")
    a.fill_between(steps, mean - std, mean + std, alpha=0.25)
    a.set_title(f"{c.env_name} {c.algorithm}")
    a.set_xlabel("environment steps")
    a.set_ylabel("episode return")
    a.legend()
    print(f"{name}: {len(records)} updates, final return {mean[-1]:.2f} ± {std[-1]:.2f}")
fig.tight_layout()
path = os.path.join(workdirs["cartpole_ppo"], "returns.png")
fig.savefig(path, dpi=100)
plt.close(fig)
Image(path)
