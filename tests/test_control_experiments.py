"""Every control experiment's :smoke config runs through ``polrl.control.run`` (the launcher's
control entry) and writes metrics.jsonl and curves.png; cartpole_mdpo goes through
``python -m polrl.launch`` (the config's ``trainer = "control"`` dispatch). Every control config
names the module that trains it (``config.run``); any other name is refused in one line."""
import importlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import ml_collections

from polrl.control import experiment, run
from polrl.train import metrics as metrics_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONTROL = ["cartpole_ppo", "pendulum_ppo", "cartpole_mdpo", "cartpole_props"]


def test_control_configs_are_documented():
    for name in CONTROL:
        module = importlib.import_module(f"experiments.{name}")
        c = module.get_config()
        assert c.trainer == "control" and c.num_seeds >= 3, name
        assert f"python -m polrl.launch --config experiments/{name}.py" in module.__doc__, name
        assert "Expected result" in module.__doc__ and "MEASURED" not in module.__doc__, name
        with pytest.raises(ValueError, match="unknown arg"):
            module.get_config("smok")


def control_configs() -> list[str]:
    """Every experiment config of the control trainer."""
    names = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "__init__")
    return [n for n in names if importlib.import_module(f"experiments.{n}").get_config().get("trainer") == "control"]


def test_every_control_config_names_the_module_that_trains_it():
    assert experiment.trainer_names() == ["hnpg", "marl", "pgd", "props", "relic", "train", "unio4", "volleyball"]
    names = control_configs()
    assert set(CONTROL) | {"cartpole_unio4", "lock_hnpg", "mpe_spread_mappo", "mpe_spread_ippo", "bandit_relic"} <= set(names)
    for name in names:
        config = importlib.import_module(f"experiments.{name}").get_config()
        module = experiment.trainer_module(config)
        assert module.__name__ == f"polrl.control.{config.run}" and callable(module.make_run), name


@pytest.mark.parametrize("bad", ["ppo", "envs", "missing"])  # a noun, a module without make_run, no field
def test_unknown_trainer_module_is_refused_in_one_line(bad):
    config = importlib.import_module("experiments.cartpole_ppo").get_config("smoke").to_dict()
    if bad == "missing":
        del config["run"]
    else:
        config["run"] = bad
    with pytest.raises(ValueError) as error:
        run(ml_collections.ConfigDict(config), "/nonexistent")
    message = str(error.value)
    shown = None if bad == "missing" else bad
    assert message.startswith(f"config.run={shown!r} is not a control trainer") and "\n" not in message
    assert all(repr(name) in message for name in experiment.trainer_names())


def check_workdir(name, config, summary, tmp_path):
    records = metrics_lib.read_metrics(str(tmp_path))
    per_update = config.num_envs * config.num_steps
    assert [r["step"] for r in records] == [per_update * (k + 1) for k in range(len(records))]
    assert len(records) == config.total_timesteps // per_update
    assert all(r["phase"] == "control" for r in records)
    assert all(np.isfinite(r["mean_return"]) and np.isfinite(r["loss"]) for r in records)
    assert summary["num_seeds"] == config.num_seeds and summary["env_steps"] == config.total_timesteps
    assert (tmp_path / "curves.png").stat().st_size > 0
    if name == "cartpole_props":
        assert all(r["sampling_error"] >= 0 and r["sampling_error_pooled"] >= 0 for r in records) and "behavior_loss" in records[-1]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CONTROL if n != "cartpole_mdpo"])
def test_smoke_config_runs(name, tmp_path):
    config = importlib.import_module(f"experiments.{name}").get_config("smoke")
    check_workdir(name, config, run(config, str(tmp_path))["control"], tmp_path)


@pytest.mark.slow
def test_launcher_dispatches_control_configs(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-m", "polrl.launch", "--config", "experiments/cartpole_mdpo.py:smoke",
         "--workdir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["summary"]) == {"control"}
    config = importlib.import_module("experiments.cartpole_mdpo").get_config("smoke")
    check_workdir("cartpole_mdpo", config, result["summary"]["control"], tmp_path)
