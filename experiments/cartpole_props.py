"""PROPS on CartPole-v1: PPO's data collected by a behaviour policy that corrects sampling error.

Launch:
  python -m polrl.launch --config experiments/cartpole_props.py --workdir /tmp/polrl/cartpole_props
Baseline (same run, on-policy sampling into the same 2-batch buffer):
  python -m polrl.launch --config experiments/cartpole_props.py:onpolicy --workdir /tmp/polrl/cartpole_props_onpolicy
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/cartpole_props.py:smoke --workdir /tmp/polrl/cartpole_props_smoke

Recipe: target = cartpole_ppo's PPO (4 envs × 128 steps per target batch) trained on a buffer of
b = 2 batches with its log-probs and values recomputed; behaviour updated after every quarter
batch on the buffer minus its oldest quarter, from φ = θ, 16 epochs × 4 minibatches of Adam 1e-3
on mean max(ρ, clip(ρ, 0.7, 1.3)) + 0.3·KL(π_φ ‖ π_θ) (Corrado & Hanna, arXiv 2311.08290).
``sampling_error`` (``polrl.control.sampling_error``) is logged per update.

<!-- report: control.cartpole_props -->
Expected result (benchmarks/results/control.jsonl, from `python benchmarks/control.py --runs
cartpole_props`: 3 seeds (0, 1, 2) in one vmapped call, 99,840 environment steps, CPU AMD EPYC; mean
± std over seeds of each seed's final return): pooled sampling error of the buffer against the
target policy (mean over updates, seed mean) 0.000126 with PROPS vs 0.000396 with on-policy sampling
(3.1× lower, lower on 84% of the updates); the 81-cell measure: 0.0317 vs 0.0326. Mean return 292 ±
44 with PROPS vs 251 ± 44 on-policy.
<!-- /report -->

Two sampling-error measures are logged per update (``polrl.control.sampling_error``), both of the
buffer against the target policy: ``sampling_error_pooled`` (one cell: the buffer's action
frequencies against the target's mean action probabilities) and ``sampling_error`` (3^4 = 81 tercile
cells of the observation; with few transitions per cell it is dominated by count noise that no
sampler can remove from one buffer).
"""
import ml_collections

from experiments import cartpole_ppo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = cartpole_ppo.get_config(None)
    c.run = "props"  # polrl.control.props trains this config; algorithm: the target's noun (ppo)
    c.total_timesteps = 100_000
    c.props = ml_collections.ConfigDict(dict(
        buffer_batches=2, behavior_chunks=4, behavior_updates=True,
        learning_rate=1e-3, clip_coef=0.3, kl_coef=0.3, num_epochs=16, num_minibatches=4,
    ))
    if arg == "onpolicy":
        c.props.behavior_updates = False
    elif arg == "smoke":
        c.num_seeds = 2
        c.num_steps = 16
        c.total_timesteps = 2 * 4 * 16
        c.algorithm_kwargs.update(dict(num_epochs=1, num_minibatches=2))
        c.props.update(dict(behavior_chunks=2, num_epochs=2, num_minibatches=2))
    elif arg is not None:
        raise ValueError(f"cartpole_props: unknown arg {arg!r}; use ':smoke', ':onpolicy' or nothing")
    return c
