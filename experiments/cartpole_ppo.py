"""PPO on CartPole-v1 with PureJaxRL's configuration, the whole run one jitted call per seed batch.

Launch:
  python -m polrl.launch --config experiments/cartpole_ppo.py --workdir /tmp/polrl/cartpole_ppo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/cartpole_ppo.py:smoke --workdir /tmp/polrl/cartpole_ppo_smoke

Recipe (PureJaxRL's CartPole defaults): 4 envs × 128 steps per update, 5e5 environment steps,
4 epochs × 4 minibatches, Adam 2.5e-4 linearly annealed, γ 0.99, λ 0.95, clip 0.2 (policy and
value), entropy 0.01, value 0.5, grad-norm 0.5, tanh 64×64 actor and critic; per-minibatch
advantage whitening; time-limit truncations bootstrapped with V(final obs).

<!-- report: control.cartpole_ppo -->
Expected result (benchmarks/results/control.jsonl, from `python benchmarks/control.py --runs
cartpole_ppo`: 3 seeds (0, 1, 2) in one vmapped call, 499,712 environment steps, CPU AMD EPYC; mean
± std over seeds of each seed's final return): mean return 500.0 ± 0.0; the seed mean first reaches
475 at 143k steps.
<!-- /report -->

``benchmarks/ppo_control.py`` times this config against PureJaxRL.
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.trainer = "control"
    c.run = "train"  # polrl.control.train trains this config
    c.seed = 0
    c.num_seeds = 3
    c.env_name = "CartPole-v1"
    c.env_params = ml_collections.ConfigDict()
    c.num_envs = 4
    c.num_steps = 128
    c.total_timesteps = 500_000
    c.gamma = 0.99
    c.bootstrap_truncation = True
    c.hidden = (64, 64)
    c.activation = "tanh"
    c.algorithm = "ppo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=2.5e-4, anneal_lr=True, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5, gae_lambda=0.95, num_epochs=4, num_minibatches=4,
    ))
    if arg == "smoke":
        c.num_seeds = 2
        c.num_steps = 16
        c.total_timesteps = 2 * 4 * 16
        c.algorithm_kwargs.num_epochs = 1
        c.algorithm_kwargs.num_minibatches = 2
    elif arg is not None:
        raise ValueError(f"cartpole_ppo: unknown arg {arg!r}; use ':smoke' or nothing")
    return c
