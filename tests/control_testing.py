"""Shared check for control experiments: documented launch command, refused bad arg, :smoke run."""
import importlib

import pytest

from polrl.control import experiment
from polrl.train import metrics as metrics_lib


def run_smoke_config(name: str, tmp_path, *, data_dir: bool = False):
    """Checks ``experiments/<name>.py`` (its docstring names the launch command and holds no
    ``MEASURED`` placeholder; ``get_config("smok")`` is refused), runs its ``:smoke`` config
    through the launcher's control entry in ``tmp_path / "run"`` (with ``data_dir`` under
    ``tmp_path`` when the config generates offline data), asserts the run wrote its curves and
    trained 2 seeds, and returns ``(summary, records)``."""
    module = importlib.import_module(f"experiments.{name}")
    assert f"python -m polrl.launch --config experiments/{name}.py" in module.__doc__
    assert "MEASURED" not in module.__doc__
    with pytest.raises(ValueError, match="unknown arg"):
        module.get_config("smok")
    config = module.get_config("smoke")
    if data_dir:
        config.data_dir = str(tmp_path / "data")
    workdir = tmp_path / "run"
    summary = experiment.run(config, str(workdir))["control"]
    assert summary["num_seeds"] == 2 and (workdir / "curves.png").stat().st_size > 0
    return summary, metrics_lib.read_metrics(str(workdir))
