# %% [markdown]
# # polrl diffusion: a masked-diffusion language model trained with BGPO
#
# A masked-diffusion LM ("Large Language Diffusion Models", LLaDA, arXiv 2502.09992) is a
# transformer *without* a causal mask. Training hides a random fraction t of the answer's tokens
# behind a mask id and predicts all of them at once; sampling starts from an all-mask answer and
# unmasks it over a few steps, committing the most confident predictions first. Its likelihood
# log π(y | x) has no closed form: RL scores a response by a Monte-Carlo ELBO over K drawn masks.
#
# The ELBO-ratio objective A·exp(B̂_θ − B̂_old) is non-linear in the K samples, so its gradient
# keeps all K forward passes in memory. BGPO ("Boundary-Guided Policy Optimization for
# Memory-efficient RL of Diffusion Large Language Models", arXiv 2510.11683) maximizes a lower bound
# that is a sum of one term per sample, accumulated one mask at a time: memory flat in K.
#
# The tour (`polrl.diffusion`, `experiments/arithmetic_bgpo.py`): forward masking and the ELBO, the
# unmasking sampler step by step, SFT then BGPO on arithmetic, one update's memory against K, and
# the learning curves. The smoke setting (`POLRL_SMOKE=1`) runs in seconds; the full config takes
# a few CPU minutes.
#
# This file is the reviewable twin of `diffusion.ipynb` (same cells, percent format).

# %%
# Install: run from a checkout of the polrl repository (colab/ is one level below the root).
import importlib.util
import os
import subprocess
import sys

root = os.path.abspath("..") if os.path.exists("../setup.py") else os.path.abspath(".")
if importlib.util.find_spec("polrl") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", root], check=True)
sys.path.insert(0, root)  # experiments/ (the configs) and benchmarks/ live at the repository root

# %%
# The experiment config and its model: `train.Setup` builds the data, the bidirectional transformer
# (the char vocabulary plus one mask id) and the jitted steps. POLRL_SMOKE=1 (set by the test
# suite) runs a seconds-long variant instead.
import jax

from experiments import arithmetic_bgpo
from polrl.diffusion import train
from polrl.tasks.tokenizer import EOS_ID, CharTokenizer

SMOKE = os.environ.get("POLRL_SMOKE") == "1"
config = arithmetic_bgpo.get_config("smoke" if SMOKE else None)
setup = train.Setup(config)
tokenizer = CharTokenizer()
num_params = sum(x.size for x in jax.tree.leaves(setup.params))
print(f"model: {num_params} parameters, {tokenizer.vocab_size} real ids + mask id {setup.mask}, "
      f"prompt {config.prompt_length} + response {config.response_length} tokens")


def show(ids):
    """A response's tokens: the mask id as _, EOS as ⏎, any other token quoted."""
    return " ".join("_" if i == setup.mask else "⏎" if i == EOS_ID else repr(tokenizer.decode([i])) for i in ids)


# %% [markdown]
# ## Forward masking and the ELBO
#
# The forward process masks each response token independently with probability t (the prompt
# never). The model is trained to predict the masked tokens, and
#
#     log π(y | x) ≥ E_t E_{y_t} [ (1/t) Σ_{i masked} log p_θ(y_i | x, y_t) ],
#
# estimated by `polrl.diffusion.elbo` from K masks, each drawn as a count l ~ U{1..L} then l
# positions (weight L/l). With L = 3 response tokens there are only 7 non-empty mask sets, so the
# exact expectation can be enumerated and the estimate watched converging to it as K grows.

# %%
import itertools
import math

import jax.numpy as jnp
import numpy as np

from polrl.diffusion import elbo

prompt_bp, valid_bp, response_bl, _ = [x[:1] for x in setup.train]
print("prompt", repr(tokenizer.decode(np.asarray(prompt_bp[0]))), "answer", show(np.asarray(response_bl[0])))
for t in (0.25, 0.5, 0.75, 1.0):
    masked = jax.random.uniform(jax.random.key(int(100 * t)), response_bl.shape) < t
    print(f"t = {t:.2f}: {show(np.asarray(jnp.where(masked, setup.mask, response_bl)[0]))}")

log_probs = lambda tokens, valid: setup.apply(setup.params, tokens, valid)
length = config.response_length
subsets = [c for m in range(1, length + 1) for c in itertools.combinations(range(length), m)]
masked = jnp.array([[i in c for i in range(length)] for c in subsets])  # every non-empty mask set, one a row
weight = jnp.array([1.0 / (len(c) * math.comb(length, len(c))) for c in subsets])
rows = lambda x: jnp.repeat(x, len(subsets), axis=0)
exact = float(jnp.sum(elbo.sample_term(log_probs, rows(prompt_bp), rows(valid_bp), rows(response_bl), masked, weight,
                                       setup.mask)))
# Sample k's mask comes from fold_in(key, k): the K-sample estimate is the mean of the first K of 256 samples.
draw = jax.jit(jax.vmap(lambda key: elbo.elbo_samples(log_probs, prompt_bp, valid_bp, response_bl, key, 256,
                                                      setup.mask)[:, 0]))
samples = draw(jax.random.split(jax.random.key(0), 8))  # [8 keys, 256 samples]
for k in (1, 4, 16, 64, 256):
    estimates = jnp.mean(samples[:, :k], axis=1)
    print(f"K = {k:>3}: ELBO {float(estimates[0]):8.4f}   spread over 8 keys ± {float(jnp.std(estimates)):.4f}")
print(f"exact (all {len(subsets)} mask sets): {exact:.4f}")

# %% [markdown]
# ## The unmasking sampler, step by step
#
# `polrl.diffusion.sampler.unmask` starts from L mask ids; each of S steps predicts every masked
# position at once and keeps the n_s most confident predictions (low-confidence remasking), with
# Σ n_s = L. The loop below writes those steps out for one prompt (the untrained model, greedy) and
# checks it reproduces the library's sampler.

# %%
from polrl.diffusion import sampler

steps = config.sampler_steps
response = jnp.full((1, length), setup.mask, prompt_bp.dtype)
valid = jnp.concatenate([valid_bp, jnp.ones((1, length), bool)], axis=1)
print(f"step 0/{steps}: {show(np.asarray(response[0]))}")
for s in range(steps):
    logp = log_probs(jnp.concatenate([prompt_bp, response], axis=1), valid)[0, prompt_bp.shape[1]:]
    pred, conf = jnp.argmax(logp, axis=-1), jnp.max(logp, axis=-1)
    conf = jnp.where(response[0] == setup.mask, conf, -jnp.inf)  # committed tokens stay
    count = length // steps + (s < length % steps)
    keep = jnp.argsort(-conf, stable=True)[:count]
    response = response.at[0, keep].set(pred[keep].astype(response.dtype))
    print(f"step {s + 1}/{steps}: {show(np.asarray(response[0]))}   (committed positions {sorted(keep.tolist())})")
library = sampler.unmask(log_probs, prompt_bp, valid_bp, jax.random.key(0), length=length, steps=steps,
                         temperature=0.0, mask=setup.mask)
print("the same tokens as polrl.diffusion.sampler.unmask:", bool(jnp.all(library == response)))

# %% [markdown]
# ## Train: SFT, then BGPO
#
# `polrl.diffusion.train.run` (what `python -m polrl.launch --config experiments/arithmetic_bgpo.py`
# runs) trains the SFT warm start on labelled answers with LLaDA's masked-token loss, then BGPO:
# groups of responses drawn by the sampler, exact-match reward, GRPO advantages, the bound's
# gradient accumulated over K masks. Metrics go to `workdir/metrics.jsonl`; held-out accuracy is the
# greedy sampler's exact match.

# %%
import tempfile

workdir = tempfile.mkdtemp(prefix="polrl_diffusion_")
summary = train.run(config, workdir)
print(f"{config.sft_steps} SFT + {config.total_steps} {config.objective} steps, K = {config.num_mc}; workdir {workdir}")
print(f"held-out accuracy: initial {summary['initial']['eval/accuracy']:.3f}, "
      f"after SFT {summary['sft']['eval/accuracy']:.3f}, after RL {summary['rl']['eval/accuracy']:.3f}")

# %% [markdown]
# ## Memory: the bound against the non-linear objective
#
# One update (loss, gradient, Adam step) on the config's batch is compiled for each objective and
# XLA's buffer assignment reports its temporary bytes (`memory_analysis()`, nothing is run) — the
# measurement of `benchmarks/frontier_bgpo.py`. BGPO's scan holds one mask's activations at a time;
# the ELBO-ratio objective differentiates all K forwards together.

# %%
from benchmarks.frontier_bgpo import update_temp_bytes

for k in (2, 8):
    temp = {objective: update_temp_bytes(setup, objective, k) for objective in ("bgpo", "elbo_ratio")}
    print(f"K = {k}: bgpo {temp['bgpo']} bytes ({temp['bgpo'] / 2**20:.2f} MiB), "
          f"elbo_ratio {temp['elbo_ratio']} bytes ({temp['elbo_ratio'] / 2**20:.2f} MiB)")

# %% [markdown]
# ## Learning curves
#
# Held-out accuracy at each evaluation (both phases) and the RL phase's training reward (the mean
# exact match of the sampled groups), read back from the run's `metrics.jsonl`. The figure is also
# saved as `curves.png` in the workdir.

# %%
import matplotlib.pyplot as plt
from IPython.display import Image

from polrl.train.metrics import read_metrics

records = read_metrics(workdir)
rl = [r for r in records if r["phase"] == "rl"]
fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
for phase in dict.fromkeys(r["phase"] for r in records):
    ev = [(r["step"], r["eval/accuracy"]) for r in records if r["phase"] == phase and "eval/accuracy" in r]
    ax[0].plot(*zip(*ev), marker="o", label=phase)
ax[1].plot([r["step"] for r in rl], [r["reward_mean"] for r in rl], marker="o" if len(rl) < 10 else None)
ax[0].set_title("held-out accuracy (greedy)"); ax[1].set_title(f"train reward ({config.objective} samples)")
ax[0].set_xlabel("step"); ax[1].set_xlabel("step"); ax[0].legend()
fig.tight_layout()
print(f"rl: {len(rl)} steps, final reward_mean {rl[-1]['reward_mean']:.3f}, "
      f"final eval/accuracy {rl[-1]['eval/accuracy']:.3f}")
path = os.path.join(workdir, "curves.png")
fig.savefig(path, dpi=100)
plt.close(fig)
Image(path)
