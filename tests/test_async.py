"""Asynchronous rollouts (``async_rollouts``): the same run as the synchronous one with the same
staleness, only generated ahead — metrics, parameters and checkpoints — and exact resume.

The synchronous reference is ``staleness = k`` without ``async_rollouts``
(``polrl.collectors.stale``: θ_{s−k} kept in a ring buffer, one step at a time). The two runs
compile their programs differently (the collector fused into the update step, or a program of
its own), so float metrics are compared to float32 rounding; the sampled tokens, and therefore
every count and length, must be equal exactly.
"""
import importlib
import math

import jax
import numpy as np
import pytest

from jax_cache import persistent_cache
from polrl.train import metrics as metrics_lib
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer

K, WARMUP, RL_STEPS = 2, 60, 6  # a warm start that makes the rewards vary
TIMING = ("step_time_s", "tokens_per_s", "pipeline/generate_s", "pipeline/wait_s")


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    with persistent_cache(str(tmp_path_factory.getbasetemp() / "jax_cache")) as path:
        yield path


def _config(asynchronous: bool, k: int = K, rollout_devices: int = 0):
    c = importlib.import_module("experiments.arithmetic_grpo").get_config("smoke")
    c.warmup.steps, c.total_steps, c.eval_every, c.checkpoint_every = WARMUP, RL_STEPS, 3, 1
    c.staleness, c.async_rollouts, c.async_rollout_devices = k, asynchronous, rollout_devices
    return c


def _records(workdir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics_lib.read_metrics(str(workdir))]


def _assert_same_run(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], float) and not float(x[key]).is_integer():
                assert math.isclose(x[key], y[key], rel_tol=1e-5, abs_tol=1e-6), (x["step"], key, x[key], y[key])
            else:
                assert x[key] == y[key], (x["step"], key, x[key], y[key])


@pytest.fixture(scope="module")
def synchronous(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sync")
    trainer = Trainer(build_spec(_config(False), progress=False), str(workdir))
    trainer.run()
    return _records(workdir), trainer.params


@pytest.mark.slow
@pytest.mark.parametrize("rollout_devices", [0, 1], ids=["shared_mesh", "own_device"])
def test_async_run_equals_the_synchronous_stale_run(synchronous, tmp_path, rollout_devices):
    """On the update's mesh, and with generation on a device of its own (weights pushed to it
    after every update, batches brought back)."""
    records, params = synchronous
    spec = build_spec(_config(True, rollout_devices=rollout_devices), progress=False)
    if rollout_devices:
        rollout = spec.phases[-1].lookahead.rollout_layout.mesh.devices.flat
        assert set(rollout).isdisjoint(spec.layout.mesh.devices.flat)
    trainer = Trainer(spec, str(tmp_path))
    trainer.run()
    mine = _records(tmp_path)
    assert [r["step"] for r in mine if "loss" in r] == list(range(1, WARMUP + RL_STEPS + 1))
    assert [r["offpolicy/staleness_mean"] for r in mine if r["phase"] == "rl" and "loss" in r] == [min(s, K) for s in range(RL_STEPS)]
    assert max(r["grad_norm"] for r in mine if r["phase"] == "rl" and "loss" in r) > 0  # the updates act
    _assert_same_run(mine, records)
    for a, b in zip(jax.tree.leaves(trainer.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


class _Crash(Exception):
    pass


@pytest.mark.slow
def test_async_run_on_a_shared_multi_device_mesh(tmp_path):
    """Generation and updates on one mesh of every device (programs with collectives from two
    threads): they take turns on the devices, evaluations included, and the run equals the
    synchronous stale run on that mesh."""
    def config(asynchronous):
        c = _config(asynchronous)
        c.mesh.data, c.rollout.batch_size, c.eval_every = -1, 8 * c.rollout.group_size, 2  # 8 prompts: one per device
        c.warmup.steps = 20
        return c

    Trainer(build_spec(config(False), progress=False), str(tmp_path / "sync")).run()
    Trainer(build_spec(config(True), progress=False), str(tmp_path / "async")).run()
    _assert_same_run(_records(tmp_path / "async"), _records(tmp_path / "sync"))


@pytest.mark.slow
def test_crash_then_resume_reproduces_the_run(synchronous, tmp_path):
    """Killed after RL step 3 (checkpointed at 2): the relaunch reads θ_0 and θ_1 for its first
    two batches from the checkpointed snapshot buffer and continues as if never stopped."""
    trainer = Trainer(build_spec(_config(True), progress=False), str(tmp_path))
    write = trainer.writer.write

    def write_then_crash(record):
        write(record)
        if record.get("phase_step") == 3 and record["phase"] != "sft_warmup":
            raise _Crash()

    trainer.writer.write = write_then_crash
    with pytest.raises(_Crash):
        trainer.run()
    trainer.writer.close()
    Trainer(build_spec(_config(True), progress=False), str(tmp_path)).run()
    _assert_same_run(_records(tmp_path), synchronous[0])


def test_async_rollouts_need_a_staleness():
    with pytest.raises(ValueError, match="async_rollouts=True needs staleness >= 1"):
        build_spec(_config(True, k=0), progress=False)
    c = _config(False)
    del c.async_rollouts
    c.async_rollouts = 1
    with pytest.raises(ValueError, match="async_rollouts=1 must be True or False"):
        build_spec(c, progress=False)
    with pytest.raises(ValueError, match="async_rollout_devices=1 needs async_rollouts=True"):
        build_spec(_config(False, rollout_devices=1), progress=False)
    with pytest.raises(ValueError, match=f"async_rollout_devices={jax.device_count()} leaves none"):
        build_spec(_config(True, rollout_devices=jax.device_count()), progress=False)
