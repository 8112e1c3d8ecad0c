# %% [markdown]
# # polrl quickstart: GRPO on embedded arithmetic
#
# Trains a tiny decoder-only transformer in two phases — SFT on a few hundred labelled
# demonstrations, then GRPO from prompts and an exact-match verifier — plots the learning
# curves and samples from the trained model. Runs on a CPU runtime in a few minutes.
#
# This file is the reviewable twin of `quickstart.ipynb` (same cells, percent format).

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
# The experiment config: the main job's recipe. POLRL_SMOKE=1 (set by the test suite) runs a
# seconds-long variant instead.
import tempfile

from experiments import arithmetic_grpo

SMOKE = os.environ.get("POLRL_SMOKE") == "1"
config = arithmetic_grpo.get_config("smoke" if SMOKE else None)
workdir = tempfile.mkdtemp(prefix="polrl_quickstart_")
print(config.algorithm, config.total_steps, "steps; workdir", workdir)

# %%
# Train: SFT warm start, then GRPO. Metrics go to workdir/metrics.jsonl.
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer

trainer = Trainer(build_spec(config), workdir)
summary = trainer.run()
summary

# %%
# Learning curves (also saved as workdir/curves.png).
import matplotlib.pyplot as plt

from polrl.train.metrics import read_metrics

records = read_metrics(workdir)
fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
for phase in dict.fromkeys(r["phase"] for r in records):
    ev = [(r["step"], r["eval/accuracy"]) for r in records if r["phase"] == phase and "eval/accuracy" in r]
    tr = [(r["step"], r["reward_mean"]) for r in records if r["phase"] == phase and "reward_mean" in r]
    if ev:
        ax[0].plot(*zip(*ev), marker="o", label=phase)
    if tr:
        ax[1].plot(*zip(*tr), label=phase)
ax[0].set_title("held-out accuracy"); ax[1].set_title("train reward (GRPO samples)")
ax[0].legend(); plt.show()

# %%
# Sample from the trained model: greedy answers to held-out prompts.
import dataclasses

import jax
import jax.numpy as jnp

from polrl.rollout import make_sampler
from polrl.tasks import task_batch

spec = trainer.spec
examples = [spec.task.test[i] for i in range(8)]
batch = task_batch(spec.task, examples)
greedy = make_sampler(spec.graphdef, dataclasses.replace(spec.sampling, temperature=0.0))
out = greedy(trainer.params, jnp.asarray(batch["prompt_bp"]), jnp.asarray(batch["prompt_valid_bp"]), jax.random.PRNGKey(0))
for e, completion in zip(batch["examples"], spec.task.tokenizer.decode_batch(jax.device_get(out.response_bt))):
    print(f"{e['prompt']:<10} model: {completion:<6} answer: {e['answer']}")
