"""Asynchronous rollouts across two processes (``polrl.train.process_pipeline``): two trainer
processes on this machine (one CPU device each, gloo collectives, ``jax.distributed``), the first
generating and the second updating, log the numbers a one-process synchronous run with the same
staleness logs — k = 0 (the two take turns) and k = 1 (the generator one step ahead) — end with
its parameters, and, relaunched from an earlier checkpoint, reproduce the rest of the run.

The runs compile their programs differently (the collector fused into the update step, or a
program on another process), so float metrics are compared to float32 rounding; the sampled
tokens, and therefore every count and length, must be equal exactly.
"""
import importlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from polrl.train import metrics as metrics_lib
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer
from test_async import _assert_same_run, _records  # the equality of two runs' logs, as there

ROOT = pathlib.Path(__file__).resolve().parents[1]
WARMUP, RL_STEPS = 20, 4
WORKER = """
import sys
from polrl.launch import initialize_distributed
port, process_id, workdir, k = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
initialize_distributed(multihost=False, coordinator=f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
                       cpu_collectives="gloo")
import numpy as np
import jax
from test_async_processes import config
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer
trainer = Trainer(build_spec(config(k, processes=2), progress=False), workdir)
trainer.run()
np.savez(f"{workdir}/params_{process_id}.npz", *[np.asarray(x) for x in jax.tree.leaves(trainer.params)])
"""


def config(k: int, processes: int = 1):
    c = importlib.import_module("experiments.arithmetic_grpo").get_config("smoke")
    c.warmup.steps, c.total_steps, c.eval_every, c.checkpoint_every = WARMUP, RL_STEPS, 2, 1
    c.staleness = k
    if processes > 1:  # the warm start and evaluations over both processes, the RL phase split by role
        c.mesh.data = processes
        c.async_rollouts, c.async_rollout_devices = True, 1
    return c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(workdir, k: int):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_DEFAULT_MATMUL_PRECISION="float32")
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(port), str(i), str(workdir), str(k)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]


def _assert_same_params(workdir, reference):
    for process in range(2):
        saved = np.load(workdir / f"params_{process}.npz")
        assert len(saved.files) == len(reference)
        for i, b in enumerate(reference):
            np.testing.assert_allclose(saved[f"arr_{i}"], np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("k", [0, 1])
def test_two_processes_match_the_synchronous_run(tmp_path, k):
    import jax

    one = tmp_path / "one"
    trainer = Trainer(build_spec(config(k), progress=False), str(one))
    trainer.run()
    reference = _records(one)
    params = jax.tree.leaves(trainer.params)

    two = tmp_path / "two"
    _two_processes(two, k)
    mine = metrics_lib.read_metrics(str(two))
    rl = [r for r in mine if r["phase"] == "rl" and "loss" in r]
    assert [r["phase_step"] for r in rl] == list(range(1, RL_STEPS + 1))
    assert all(r["pipeline/generate_s"] > 0 for r in rl)  # the batches came from the generating process
    assert max(r["grad_norm"] for r in rl) > 0  # the updates act
    _assert_same_run(_records(two), reference)
    _assert_same_params(two, params)
    if not k:
        return
    # A relaunch from the checkpoint before the last step (its first batch from the snapshot buffer)
    # reproduces the run.
    checkpoints = two / "checkpoints" / "rl"
    shutil.rmtree(checkpoints / str(RL_STEPS))
    assert max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()) == RL_STEPS - 1
    _two_processes(two, k)
    _assert_same_run(_records(two), reference)
    _assert_same_params(two, params)
