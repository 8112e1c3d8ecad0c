"""Every experiment's :smoke config runs end to end through the public launcher path, and bad
configs fail with a clear message before anything compiles."""
import importlib
import json
import pathlib

import jax.numpy as jnp
import pytest
from jax_cache import persistent_cache

from polrl.train import metrics as metrics_lib
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALL_EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "__init__")
# LLM-trainer experiments; control configs (``trainer = "control"``) have their own tests.
EXPERIMENTS = [
    n for n in ALL_EXPERIMENTS
    if importlib.import_module(f"experiments.{n}").get_config().get("trainer", "llm") == "llm"
]


@pytest.fixture(autouse=True)
def data_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))


@pytest.fixture(scope="module", autouse=True)
def shared_compilations(tmp_path_factory):
    """One compilation cache for the module: configs of a family share their warm-start, sampler
    and evaluation programs, compiled once per worker."""
    with persistent_cache(str(tmp_path_factory.getbasetemp() / "experiments_jax_cache")):
        yield


def smoke_config(name):
    return importlib.import_module(f"experiments.{name}").get_config("smoke")


def test_every_experiment_is_covered():
    assert set(EXPERIMENTS) >= {"arithmetic_grpo", "arithmetic_sft", "arithmetic_ppo", "arithmetic_dpo"}


# Control runs are one jitted call over the whole budget: they are sized in environment steps and
# have no evaluation or checkpoint cadence.
COMMON_FIELDS = {
    "llm": ("seed", "total_steps", "eval_every", "checkpoint_every"),
    "control": ("seed", "total_timesteps", "num_seeds"),
    "diffusion": ("seed", "total_steps", "eval_every", "checkpoint_every"),
}


def test_every_config_exposes_the_common_fields():
    for name in ALL_EXPERIMENTS:
        c = importlib.import_module(f"experiments.{name}").get_config()
        for field in COMMON_FIELDS[c.get("trainer", "llm")]:
            assert field in c, (name, field)
        doc = importlib.import_module(f"experiments.{name}").__doc__
        assert f"python -m polrl.launch --config experiments/{name}.py" in doc, name
        assert "Expected result" in doc, name


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_smoke_config_runs(name, tmp_path):
    config = smoke_config(name)
    spec = build_spec(config, progress=False)
    summary = Trainer(spec, str(tmp_path)).run()
    records = metrics_lib.read_metrics(str(tmp_path))
    phases = list(dict.fromkeys(r["phase"] for r in records))
    assert list(summary) == phases
    scorers = {p.name for p in spec.phases if not p.algorithm.trains_policy}
    for phase in phases:
        rows = [r for r in records if r["phase"] == phase]
        if phase in scorers:  # a reward / process reward model is not evaluated as a policy
            assert not any(k.startswith("eval/") for r in rows for k in r)
            continue
        # an evaluation at the end of each phase, on held-out prompts
        assert "eval/accuracy" in rows[-1] and 0.0 <= rows[-1]["eval/accuracy"] <= 1.0
        assert all("step" in r for r in rows)
    last_step = max(r["step"] for r in records)
    assert last_step == config.total_steps + config.warmup.steps
    trained = [r for r in records if "loss" in r]
    assert trained and all(jnp.isfinite(r["loss"]) for r in trained)
    assert (tmp_path / "curves.png").stat().st_size > 0
    for phase in phases:
        assert any((tmp_path / "checkpoints" / phase).iterdir())
    # Relaunching a finished run resumes from its checkpoints and trains nothing more.
    before = len(records)
    again = Trainer(build_spec(config, progress=False), str(tmp_path)).run()
    assert all(v == {"resumed_complete": True} for v in again.values())
    assert len(metrics_lib.read_metrics(str(tmp_path))) == before


def test_unknown_algorithm_name():
    config = smoke_config("arithmetic_grpo")
    config.algorithm = "grpoo"
    with pytest.raises(ValueError, match=r"unknown algorithm 'grpoo'.*'grpo'"):
        build_spec(config, progress=False)


def test_batch_not_divisible_by_group_size():
    config = smoke_config("arithmetic_grpo")
    config.rollout.batch_size = 18
    with pytest.raises(ValueError, match=r"rollout.batch_size=18 is not divisible by rollout.group_size=4"):
        build_spec(config, progress=False)


def test_sequences_not_divisible_by_minibatches(tmp_path):
    config = smoke_config("arithmetic_ppo")
    config.algorithm_kwargs.num_minibatches = 3
    with pytest.raises(ValueError, match=r"not divisible by num_minibatches=3"):
        Trainer(build_spec(config, progress=False), str(tmp_path))


def test_prompt_longer_than_context(tmp_path):
    config = smoke_config("arithmetic_grpo")
    config.model.max_len = 8
    with pytest.raises(ValueError, match=r"exceeds model.max_len=8"):
        Trainer(build_spec(config, progress=False), str(tmp_path))


def _with_reward(spec, reward):
    """The spec with the RL phase's collector scoring by ``reward``."""
    import dataclasses

    from polrl import collectors

    task = dataclasses.replace(spec.task, device_reward=reward)
    ctx = collectors.Context(graphdef=spec.graphdef, task=task, sampling=spec.sampling, group_size=4,
                             layout=spec.layout)
    phases = tuple(dataclasses.replace(ph, collector=collectors.group_samples(ctx)) if ph.name == "rl" else ph
                   for ph in spec.phases)
    return dataclasses.replace(spec, task=task, phases=phases)


def test_reward_function_wrong_shape(tmp_path):
    spec = build_spec(smoke_config("arithmetic_grpo"), progress=False)
    bad = _with_reward(spec, lambda r, m, a, av: jnp.zeros((r.shape[0], 2)))
    with pytest.raises(ValueError, match=r"phase 'rl': .* returns shape \(16, 2\), expected \[16\]"):
        Trainer(bad, str(tmp_path))


def test_nan_rewards_stop_the_run(tmp_path):
    spec = build_spec(smoke_config("arithmetic_grpo"), progress=False)
    bad = _with_reward(spec, lambda r, m, a, av: jnp.full((r.shape[0],), jnp.nan))
    with pytest.raises(ValueError, match=r"returned NaN or inf"):
        Trainer(bad, str(tmp_path)).run()


def test_host_reward_path_runs(tmp_path):
    """A task without a device verifier (countdown) trains through the host-reward path."""
    config = smoke_config("arithmetic_grpo")
    config.task = dict(name="countdown", data_dir="", num_train=200, num_test=50)
    config.rollout.max_new_tokens = 16
    config.model.max_len = 40
    Trainer(build_spec(config, progress=False), str(tmp_path)).run()
    records = metrics_lib.read_metrics(str(tmp_path))
    rl = [r for r in records if r["phase"] == "rl" and "reward_mean" in r]
    assert len(rl) == config.total_steps and all(0.0 <= r["reward_mean"] <= 1.0 for r in rl)


def test_metrics_jsonl_lines_are_json(tmp_path):
    writer = metrics_lib.MetricWriter(str(tmp_path), tensorboard=False)
    writer.write({"step": 1, "phase": "rl", "loss": jnp.float32(0.5)})
    writer.close()
    (line,) = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(line) == {"step": 1, "phase": "rl", "loss": 0.5}


@pytest.mark.slow
def test_relaunch_resumes_mid_phase_exactly(tmp_path):
    """Stop after 2 of 3 RL steps (checkpoint at 2), relaunch: step 3 equals the straight run's."""
    config = smoke_config("arithmetic_grpo")
    config.checkpoint_every = 1
    straight = tmp_path / "straight"
    Trainer(build_spec(config, progress=False), str(straight)).run()

    resumed = tmp_path / "resumed"
    config.total_steps = 2  # the "killed" run: its last checkpoint is RL step 2
    Trainer(build_spec(config, progress=False), str(resumed)).run()
    config.total_steps = 3
    Trainer(build_spec(config, progress=False), str(resumed)).run()

    def last_rl(path):
        rows = [r for r in metrics_lib.read_metrics(str(path)) if r["phase"] == "rl" and "loss" in r]
        return rows[-1]

    a, b = last_rl(straight), last_rl(resumed)
    assert a["phase_step"] == b["phase_step"] == 3 and a["step"] == b["step"]
    for key in ("loss", "reward_mean", "entropy", "grad_norm", "response_length"):
        assert a[key] == b[key], key
