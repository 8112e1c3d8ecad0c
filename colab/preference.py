# %% [markdown]
# # polrl preference learning: offline DPO, then online DPO
#
# A guided tour of the preference family on embedded arithmetic ("8+6+5=" → "19"). Both runs start
# from the same kind of SFT warm start and train the `dpo` noun; only where the pairs come from
# changes:
#
# 1. **offline** (`experiments/arithmetic_dpo_offline.py`): a fixed JSONL file of pairs, chosen = the
#    right answer, rejected = a near miss (collector `offline_pairs`);
# 2. **on-policy** (`experiments/arithmetic_online_dpo.py`): G answers sampled from the *current*
#    policy each step, the best and the worst by the verifier as a pair (collector `preference_pairs`).
#
# The notebook decodes a chosen/rejected pair of each collector, trains both, and plots the logged
# pair metrics: `pref_accuracy` (the implicit reward β·log π/π_ref ranks the chosen first) and
# `pref_margin` (the mean implicit-reward margin). Runs on a CPU runtime; the full configs take long
# on a CPU, the smoke setting (`POLRL_SMOKE=1`) seconds.
#
# This file is the reviewable twin of `preference.ipynb` (same cells, percent format).

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

from experiments import arithmetic_dpo_offline, arithmetic_online_dpo

SMOKE = os.environ.get("POLRL_SMOKE") == "1"
configs = {"offline": arithmetic_dpo_offline.get_config("smoke" if SMOKE else None),
           "on-policy": arithmetic_online_dpo.get_config("smoke" if SMOKE else None)}
for name, c in configs.items():
    print(f"{name}: {c.algorithm} on collector {c.collector!r}, {c.warmup.steps} SFT + {c.total_steps} steps")

# %% [markdown]
# ## What a collector builds
#
# A collector turns a step's examples into a `Batch`. Both pair collectors use one layout: rows
# `[chosen_0, rejected_0, chosen_1, …]` in groups of two (`group_b`), `reward_b` higher for the
# chosen row. `one_batch` runs a phase's collector once, outside the trainer, from the given
# parameters.

# %%
import jax

from polrl.tasks import BatchIterator
from polrl.train.build import build_spec
from polrl.train.trainer import init_phase_state


def one_batch(spec, phase, params, seed=0):
    """One step's Batch from ``phase.collector`` with the policy (and reference) at ``params``."""
    collector = phase.collector
    state = init_phase_state(spec, phase, params, jax.random.PRNGKey(seed))
    data = next(BatchIterator(phase.source, collector.reads(phase.prompts_per_step), task=spec.task, seed=seed))
    if not collector.host:  # a device collector is compiled, and reads the arrays only
        data = {k: v for k, v in data.items() if k != "examples"}
        batch, _, _ = jax.jit(collector.collect)(state.collector_state, state, data, jax.random.PRNGKey(seed))
    else:
        batch, _, _ = collector.collect(state.collector_state, state, data, jax.random.PRNGKey(seed))
    return jax.device_get(batch)


def show_pairs(spec, batch, pairs=4):
    """Prints the first ``pairs`` (chosen, rejected) rows: prompt, response, reward."""
    tok = spec.task.tokenizer
    prompts, responses = tok.decode_batch(batch.prompt_bp), tok.decode_batch(batch.response_bt)
    for i in range(0, 2 * pairs, 2):
        tie = "   (tie: ignored by the loss)" if batch.reward_b[i] == batch.reward_b[i + 1] else ""
        print(f"group {batch.group_b[i]}  {prompts[i]:<8} chosen {responses[i]!r:<6} (reward {batch.reward_b[i]:.0f})"
              f"   rejected {responses[i + 1]!r:<6} (reward {batch.reward_b[i + 1]:.0f}){tie}")


specs = {name: build_spec(c) for name, c in configs.items()}
offline_phase = specs["offline"].phases[-1]
print(f"phase {offline_phase.name!r}: {len(offline_phase.source)} pairs in the file; one step's rows:")
show_pairs(specs["offline"], one_batch(specs["offline"], offline_phase, specs["offline"].init_params))

# %% [markdown]
# ## Offline DPO
#
# The trainer runs the SFT warm start, then DPO on the file's pairs with the warm start as the
# frozen reference. Metrics go to `workdir/metrics.jsonl`.

# %%
from polrl.train.trainer import Trainer

workdirs = {name: tempfile.mkdtemp(prefix=f"polrl_preference_{name}_") for name in configs}
trainers = {"offline": Trainer(specs["offline"], workdirs["offline"])}
trainers["offline"].run()

# %% [markdown]
# ## On-policy pairs
#
# `preference_pairs` with `policy="current"` samples G answers per prompt from the policy being
# trained and pairs the best with the worst; a prompt whose answers all score the same gives a tie
# (equal rewards), which the DPO loss ignores. Here its pairs from the offline-DPO model just trained:

# %%
online_phase = specs["on-policy"].phases[-1]
print(f"phase {online_phase.name!r}: {specs['on-policy'].sampling.max_new_tokens}-token answers, "
      f"G = {configs['on-policy'].rollout.group_size} samples per prompt")
show_pairs(specs["on-policy"], one_batch(specs["on-policy"], online_phase, trainers["offline"].params))

# %% [markdown]
# ## Online DPO
#
# Its own SFT warm start (the reference), then DPO on fresh pairs of the current policy every step.

# %%
trainers["on-policy"] = Trainer(specs["on-policy"], workdirs["on-policy"])
trainers["on-policy"].run()

# %% [markdown]
# ## Curves
#
# Per run: held-out greedy accuracy (at every evaluation of the DPO phase, the warm start first), the
# on-policy run's reward of its sampled answers, and per DPO step the pair accuracy and the
# implicit-reward margin on that step's pairs. The figure is also saved as `preference.png` in the
# offline run's workdir.

# %%
import matplotlib.pyplot as plt
from IPython.display import Image

from polrl.train.metrics import read_metrics

fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
for color, (name, workdir) in enumerate(workdirs.items()):
    records = read_metrics(workdir)
    dpo = [r for r in records if r["phase"] != "sft_warmup"]
    evals = [(r["step"], r["eval/accuracy"]) for r in dpo if "eval/accuracy" in r]  # the first: the warm start
    ax[0].plot(*zip(*evals), marker="o", color=f"C{color}", label=f"{name}: held-out accuracy")
    sampled = [(r["step"], r["reward_mean"]) for r in dpo if "reward_mean" in r]  # on-policy: its G samples' reward
    if sampled:
        ax[0].plot(*zip(*sampled), linestyle="--", color=f"C{color}", label=f"{name}: sampled reward")
    for a, key in zip(ax[1:], ("pref_accuracy", "pref_margin")):
        a.plot([r["step"] for r in dpo if key in r], [r[key] for r in dpo if key in r], color=f"C{color}", label=name)
    final = dpo[-1]
    print(f"{name}: final pref_accuracy {final['pref_accuracy']:.3f}, pref_margin {final['pref_margin']:.3f}, "
          f"held-out accuracy {evals[0][1]:.3f} (warm start) -> {evals[-1][1]:.3f}")
for a, title in zip(ax, ("accuracy and reward", "pair accuracy (implicit reward)", "implicit reward margin")):
    a.set_title(title)
    a.set_xlabel("step")
ax[0].legend()
fig.tight_layout()
path = os.path.join(workdirs["offline"], "preference.png")
fig.savefig(path, dpi=100)
plt.close(fig)
Image(path)
