"""Uni-O4 on CartPole-v1: ensemble BC, IQL Q/V, per-member BPPO with OPE-gated anchors on an
offline dataset generated in the repo, then online PPO from the offline policy and value.

Launch:
  python -m polrl.launch --config experiments/cartpole_unio4.py --workdir /tmp/polrl/cartpole_unio4
Smoke (run by tests/test_control_unio4.py):
  python -m polrl.launch --config experiments/cartpole_unio4.py:smoke --workdir /tmp/polrl/cartpole_unio4_smoke

Offline data (``polrl.control.offline_data``, generated once into ``data_dir``): the repo's PPO
trained for 50k steps, rolled out in 16 environments × 1000 steps; 8 environments act with it
("expert", mean return 283), 8 with a uniformly random action on half of the steps (ε = 0.5);
16k transitions, behaviour mean return 107.

Recipe (reference defaults where they transfer, sizes scaled to CartPole): 4 BC members
(α_bc = 0.1, 2000 Adam steps of 1e-3, batch 256), IQL (expectile 0.7, 5000 Adam steps of 3e-4,
Polyak 0.005, γ 0.99), 1000 BPPO steps (Adam 1e-4 and clip 0.25 both decayed linearly to 0,
entropy 0, grad-norm 0.5 per member), fitted-Q OPE on 2048 dataset states every 100 steps;
online: cartpole_ppo's PPO (4 envs × 128 steps, 4 epochs × 4 minibatches, Adam 2.5e-4 annealed)
for 102,400 environment steps from the member with the best OPE score and V as the critic.

<!-- report: control.cartpole_unio4 -->
Expected result (benchmarks/results/control.jsonl, from `python benchmarks/control.py --runs
cartpole_unio4`: 3 seeds (0, 1, 2) in one vmapped call, 102,400 environment steps, CPU AMD EPYC;
mean ± std over seeds of each seed's final return): bc_return 84.8 ± 14.0, offline_return 319.7 ±
33.3; online return 426.8 ± 54.4. PPO from scratch with the same online budget (cartpole_ppo,
total_timesteps=102,400): 298.1 ± 35.0.
<!-- /report -->
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.trainer = "control"
    c.run = "unio4"  # polrl.control.unio4 trains this config
    c.seed = 0
    c.num_seeds = 3
    c.algorithm = "unio4"
    c.env_name = "CartPole-v1"
    c.env_params = ml_collections.ConfigDict()
    c.num_envs = 4
    c.num_steps = 128
    c.total_timesteps = 102_400  # online
    c.gamma = 0.99
    c.bootstrap_truncation = True
    c.hidden = (64, 64)
    c.activation = "tanh"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=2.5e-4, anneal_lr=True, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5, gae_lambda=0.95, num_epochs=4, num_minibatches=4,
    ))
    c.data_dir = ""  # "" → $POLRL_DATA_DIR or ~/.cache/polrl/data
    c.offline_data = ml_collections.ConfigDict(dict(
        env_name="CartPole-v1", env_kwargs={}, train_timesteps=50_000, num_envs=16, num_steps=1000,
        expert_fraction=0.5, noise=0.5, seed=0,
    ))
    c.unio4 = ml_collections.ConfigDict(dict(
        num_members=4, alpha_bc=0.1, bc_steps=2_000, bc_lr=1e-3, batch_size=256,
        value_steps=5_000, value_lr=3e-4, expectile=0.7, target_rate=0.005,
        bppo_steps=1_000, bppo_lr=1e-4, clip_ratio=0.25, ent_coef=0.0, max_grad_norm=0.5,
        eval_every=100, ope_states=2_048, eval_steps=1_000,
    ))
    if arg == "smoke":
        c.num_seeds = 2
        c.num_steps = 16
        c.total_timesteps = 2 * 4 * 16
        c.algorithm_kwargs.update(dict(num_epochs=1, num_minibatches=2))
        c.offline_data.update(dict(train_timesteps=512, num_envs=2, num_steps=64))
        c.unio4.update(dict(num_members=2, bc_steps=2, batch_size=16, value_steps=2, bppo_steps=4,
                            eval_every=2, ope_states=16, eval_steps=16))
    elif arg is not None:
        raise ValueError(f"cartpole_unio4: unknown arg {arg!r}; use ':smoke' or nothing")
    return c
