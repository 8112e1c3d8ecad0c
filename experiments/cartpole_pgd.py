"""Policy-Guided Diffusion on CartPole-v1: IQL + AWR on the offline data (real only), a
trajectory DDPM of the data's 8-step episode windows, windows sampled with guidance by the
real-only policy, and the same IQL + AWR agent trained on real + synthetic rows.

Launch:
  python -m polrl.launch --config experiments/cartpole_pgd.py --workdir /tmp/polrl/cartpole_pgd
Smoke (run by tests/test_control_pgd.py):
  python -m polrl.launch --config experiments/cartpole_pgd.py:smoke --workdir /tmp/polrl/cartpole_pgd_smoke

Offline data: cartpole_unio4's (``polrl.control.offline_data``: 8 PPO "expert" environments and
8 ε = 0.5 noisy ones, 16k transitions).

Recipe: IQL (expectile 0.7, γ 0.99, Polyak 0.005) with AWR (β = 3, weights clipped at 100), 3000
Adam steps of 3e-4, batch 256, for each agent; DDPM with a cosine schedule of 50 steps and an MLP
denoiser (256, 256), 3000 Adam steps of 1e-3, x̂_0 clipped at 3 standard deviations either side;
2000 synthetic rows guided with λ = 1; half of each minibatch of the augmented agent synthetic.
Returns measured every 500 gradient steps over 1000 steps of 4 environments with sampled actions.

<!-- report: frontier.pgd -->
Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_pgd.py`; raw:
benchmarks/results/frontier_pgd.jsonl; CPU AMD EPYC; 3 seeds in one vmapped call; final return with
sampled actions, mean ± std over seeds): IQL on real data alone 387.2 ± 19.0; with unguided
synthetic trajectories 134.5 ± 19.1; with guided ones (λ = 1.0) 245.2 ± 21.4. Guidance raises the
target policy's mean log π on the synthetic rows from -1.36 to -0.51 (real rows: -0.90), but
synthetic data still lowers the return here.
<!-- /report -->
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.trainer = "control"
    c.run = "pgd"  # polrl.control.pgd trains this config
    c.seed = 0
    c.num_seeds = 3
    c.algorithm = "pgd"
    c.env_name = "CartPole-v1"
    c.env_params = ml_collections.ConfigDict()
    c.num_envs = 4  # evaluation environments
    c.total_timesteps = 3_000  # gradient steps of each agent (no online environment steps)
    c.gamma = 0.99
    c.hidden = (64, 64)
    c.activation = "tanh"
    c.data_dir = ""  # "" → $POLRL_DATA_DIR or ~/.cache/polrl/data
    c.offline_data = ml_collections.ConfigDict(dict(
        env_name="CartPole-v1", env_kwargs={}, train_timesteps=50_000, num_envs=16, num_steps=1000,
        expert_fraction=0.5, noise=0.5, seed=0,
    ))
    c.pgd = ml_collections.ConfigDict(dict(
        horizon=8, diffusion_steps=50, denoiser_hidden=(256, 256), diffusion_lr=1e-3,
        diffusion_train_steps=3_000, clip_x0=3.0, guidance=1.0, num_synthetic=2_000, synthetic_fraction=0.5,
        batch_size=256, lr=3e-4, expectile=0.7, awr_temperature=3.0,
        target_rate=0.005, eval_every=500, eval_steps=1_000,
    ))
    if arg == "smoke":
        c.num_seeds = 2
        c.total_timesteps = 4
        c.offline_data.update(dict(train_timesteps=512, num_envs=2, num_steps=64))
        c.pgd.update(dict(horizon=4, diffusion_steps=4, denoiser_hidden=(16,), diffusion_train_steps=2,
                          num_synthetic=16, batch_size=16, eval_every=2, eval_steps=16))
    elif arg is not None:
        raise ValueError(f"cartpole_pgd: unknown arg {arg!r}; use ':smoke' or nothing")
    return c
