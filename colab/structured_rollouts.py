# %% [markdown]
# # polrl structured rollouts: the engine, a tree collector, a Batch
#
# A guided tour of how polrl acquires a training batch, on the chain task (a running-sum
# scratchpad, "3+4+1=" → "3+4=7,7+1=8;8"):
#
# 1. train TreePO (`experiments/chain_treepo.py`): an SFT warm start, then tree rollouts
#    (collector `tree`: paths decoded in segments and forked at the boundaries, so leaves share
#    prefixes) with the tree-structured advantage;
# 2. the rollout engine (`polrl.rollout.engine`) by hand: prefill, fork ×G, generate;
# 3. the tree collector, wrapped with `with_expert_rows`, run once outside the trainer: the Batch's
#    fields (`group_b`, `source_b`, `version_b`, masks, `aux["tree_node_bd"]`);
# 4. curves: reward, held-out accuracy and the tokens the tree decoded against the rows it trains on.
#
# Runs on a CPU runtime; the full config takes long on a CPU, the smoke setting (`POLRL_SMOKE=1`)
# under a minute.
#
# This file is the reviewable twin of `structured_rollouts.ipynb` (same cells, percent format).

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
# The experiment config. POLRL_SMOKE=1 (set by the test suite) runs its seconds-long variant.
import math
import tempfile

from experiments import chain_treepo
from polrl.collectors.tree import widths
from polrl.train.build import build_spec

SMOKE = os.environ.get("POLRL_SMOKE") == "1"
config = chain_treepo.get_config("smoke" if SMOKE else None)
spec = build_spec(config)
tree_kw = dict(config.collector_kwargs)
leaves, budget = config.rollout.group_size, spec.sampling.max_new_tokens
plan = widths(math.ceil(budget / tree_kw["segment_len"]), leaves, tree_kw["init_branches"], tree_kw["branching"])
print(f"{config.algorithm} with collector {config.collector!r}: {leaves} leaves per prompt, segments of "
      f"{tree_kw['segment_len']} of the {budget}-token budget, paths per segment {plan}")

# %% [markdown]
# ## Train: SFT warm start, then TreePO
#
# Metrics go to `workdir/metrics.jsonl`.

# %%
from polrl.train.trainer import Trainer

workdir = tempfile.mkdtemp(prefix="polrl_structured_rollouts_")
trainer = Trainer(spec, workdir)
trainer.run()

# %% [markdown]
# ## The engine by hand
#
# Every rollout is a program over a slot-based KV cache: `extend` appends tokens to slots (here
# the prompts, one prefill each), `repeat`/`fork` copy slots without recomputing them (a group's G
# members share the prefill), `generate` decodes every active slot until EOS or its budget and says
# why each stopped. This program is group sampling; `polrl.rollout.sample` is the same program, so
# with the same key it draws the same tokens.

# %%
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from polrl.rollout import engine, sample
from polrl.tasks import task_batch

G = 4
prompts = task_batch(spec.task, [spec.task.test[i] for i in range(2)])
prompt_bp, valid_bp = jnp.asarray(prompts["prompt_bp"]), jnp.asarray(prompts["prompt_valid_bp"])


@jax.jit
def group_sampling(params, prompt_bp, valid_bp, rng):
    model = nnx.merge(spec.graphdef, params)
    slots = engine.init_slots(model, prompt_bp.shape[0], prompt_bp.shape[1] + budget)
    slots = engine.extend(model, slots, prompt_bp, valid_bp)  # one prefill per prompt
    slots = engine.repeat(slots, G)  # fork each prompt into G slots
    generation, _ = engine.generate(model, slots, rng, spec.sampling, commit_last=False)
    return generation


rng = jax.random.PRNGKey(0)
gen = jax.device_get(group_sampling(trainer.params, prompt_bp, valid_bp, rng))
tok = spec.task.tokenizer
for s, text in enumerate(tok.decode_batch(gen.tokens_sn)):
    print(f"slot {s} prompt {tok.decode(prompts['prompt_bp'][s // G]):<12} {engine.FINISH_NAMES[gen.finish_s[s]]:<7} "
          f"{gen.length_s[s]:>3} tokens  {text!r}")
reference = jax.jit(lambda p, b, v, r: sample(spec.graphdef, p, b, v, r, spec.sampling, num_samples=G))
same = np.array_equal(jax.device_get(reference(trainer.params, prompt_bp, valid_bp, rng).response_bt), gen.tokens_sn)
print("the same tokens as polrl.rollout.sample:", same)

# %% [markdown]
# ## The tree collector and its Batch
#
# A collector is `collect(collector_state, policy_state, data, rng) -> (batch, collector_state,
# metrics)`; a wrapper `(collector, ctx) -> collector` adds rows or fields to what it wraps. Here the
# run's tree collector wrapped with `with_expert_rows(1)`, which appends the labelled answer to
# every group: groups of L leaves become L + 1 rows, the expert row last with `source_b = EXPERT`
# and behaviour log-probs 0. `version_b` is the `PolicyState.step` that produced a row.
# `aux["tree_node_bd"][b, d]` names the node of row b at depth d + 1 (−1 after the leaf ended): two
# leaves of a group share their prefix up to the depths where the entries agree.

# %%
from polrl import collectors
from polrl.core import EXPERT, SOURCE_NAMES
from polrl.tasks import BatchIterator
from polrl.train.trainer import init_phase_state

phase = spec.phases[-1]
ctx = collectors.Context(graphdef=spec.graphdef, task=spec.task, sampling=spec.sampling,
                         group_size=config.rollout.group_size, layout=spec.layout)
mixed = collectors.with_expert_rows(1)(phase.collector, ctx)
state = init_phase_state(spec, phase, trainer.params, rng)
state = state.replace(step=jnp.asarray(phase.steps, jnp.int32))  # the policy after the phase's updates
data = next(BatchIterator(phase.source, phase.prompts_per_step, task=spec.task, seed=0))
data = {k: v for k, v in data.items() if k != "examples"}
batch, _, metrics = jax.device_get(jax.jit(mixed.collect)(state.collector_state, state, data, rng))

for name, value in sorted(vars(batch).items()):
    if hasattr(value, "shape"):
        print(f"{name:<18} {str(value.dtype):<8} {value.shape}")
print("aux:", {k: v.shape for k, v in batch.aux.items()}, " group_size:", batch.group_size)
rows = batch.group_size
print(f"\ngroup 0 ({tok.decode(batch.prompt_bp[0])!r}):")
for b in range(rows):
    nodes = batch.aux["tree_node_bd"][b] if batch.source_b[b] != EXPERT else "(no tree: the label)"
    print(f"row {b}: group {batch.group_b[b]} {SOURCE_NAMES[int(batch.source_b[b])]:<9} version {batch.version_b[b]} "
          f"reward {batch.reward_b[b]:.0f} tokens {int(batch.mask_bt[b].sum()):>3} nodes {nodes}")
print(f"\ndecoded {metrics['sampled_tokens']:.0f} tokens for the {metrics['response_tokens']:.0f} tokens of the "
      f"sampled rows (shared prefixes decoded once)")

# %% [markdown]
# ## Curves
#
# Train reward and held-out accuracy per phase, and per TreePO step the tokens the tree decoded
# (`sampled_tokens`) against the tokens of its rows (`response_tokens`, each row's shared prefix
# counted again). The figure is also saved as `rollouts.png` in the workdir.

# %%
import matplotlib.pyplot as plt
from IPython.display import Image

from polrl.train.metrics import read_metrics

records = read_metrics(workdir)
fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
for color, name in enumerate(dict.fromkeys(r["phase"] for r in records)):
    mine = [r for r in records if r["phase"] == name]
    ev = [(r["step"], r["eval/accuracy"]) for r in mine if "eval/accuracy" in r]
    ax[0].plot(*zip(*ev), marker="o", color=f"C{color}", label=name)
    tr = [(r["step"], r["reward_mean"]) for r in mine if "reward_mean" in r]
    if tr:
        ax[1].plot(*zip(*tr), color=f"C{color}", label=name)
tree_steps = [r for r in records if "sampled_tokens" in r]
for key in ("sampled_tokens", "response_tokens"):
    ax[2].plot([r["step"] for r in tree_steps], [r[key] for r in tree_steps], label=key)
for a, title in zip(ax, ("held-out accuracy", "train reward (tree leaves)", "tokens per TreePO step")):
    a.set_title(title)
    a.set_xlabel("step")
    a.legend()
fig.tight_layout()
path = os.path.join(workdir, "rollouts.png")
fig.savefig(path, dpi=100)
plt.close(fig)
last = tree_steps[-1]
print(f"last TreePO step: reward_mean {last['reward_mean']:.3f}, sampled/response tokens "
      f"{last['sampled_tokens'] / last['response_tokens']:.3f}")
Image(path)
