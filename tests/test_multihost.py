"""Multi-host for real: two launcher processes on this machine (one CPU device each, gloo
collectives, jax.distributed) train the GSM8K smoke config (a tiny Hugging Face Qwen2 fixture,
GRPO with a host verifier: each process decodes and scores its own rows) over a data=2 mesh, each
reading its own half of every batch, and log the numbers a one-process run of the same global
batch logs."""
import importlib
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from polrl.train import metrics as metrics_lib
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = "gsm8k_grpo"
OVERRIDES = {"total_steps": 2, "checkpoint_every": 1, "eval_every": 2}
TIMING = ("step_time_s", "tokens_per_s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _records(workdir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics_lib.read_metrics(str(workdir))]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path_factory, tmp_path, monkeypatch):
    data_dir = str(tmp_path_factory.getbasetemp() / "data")
    port = _free_port()
    env = dict(os.environ, POLRL_DATA_DIR=data_dir, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_DEFAULT_MATMUL_PRECISION="float32")
    args = [sys.executable, "-m", "polrl.launch", "--config", f"experiments/{CONFIG}.py:smoke",
            f"--workdir={tmp_path / 'two'}", "--progress=false", "--config.mesh.data=2",
            f"--coordinator=127.0.0.1:{port}", "--num_processes=2", "--cpu_collectives=gloo"]
    args += [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
    procs = [subprocess.Popen(args + [f"--process_id={i}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]

    # Meanwhile, the reference: one process, one device, the same global batches.
    monkeypatch.setenv("POLRL_DATA_DIR", data_dir)
    config = importlib.import_module(f"experiments.{CONFIG}").get_config("smoke")
    for key, value in OVERRIDES.items():
        section, _, name = key.rpartition(".")
        (config[section] if section else config)[name] = value
    Trainer(build_spec(config, progress=False), str(tmp_path / "one")).run()

    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert '"summary"' in outs[0][0] and '"summary"' not in outs[1][0]  # only process 0 reports

    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [0, 1, 2]
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5, err_msg=k)
            else:
                assert a[k] == b[k], k
    assert (tmp_path / "two" / "checkpoints" / "rl" / "2").is_dir()
