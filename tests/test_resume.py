"""Exact resume: a run interrupted at any point (exception, kill -9, SIGTERM) and relaunched
produces the same metrics.jsonl, bit for bit, as an uninterrupted run; half-written checkpoints
are never restored. The run is RLHF's smoke config — an SFT warm start, then GRPO scored by a
frozen reward model, an auxiliary model of the run (``config.models``), which the checkpoints do
not hold: a relaunch reloads it from its source."""
import importlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import orbax.checkpoint as ocp
import pytest

from jax_cache import persistent_cache, subprocess_env
from polrl.train import checkpoint, metrics as metrics_lib
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
WARMUP, RL_STEPS = 2, 6  # 8 steps: 2 SFT + 6 GRPO
OVERRIDES = dict(warmup=WARMUP, total_steps=RL_STEPS, checkpoint_every=1, eval_every=2)
TIMING = ("step_time_s", "tokens_per_s")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One compilation cache for this module's runs and subprocesses (the same executables, so
    the same numbers; only the first run compiles)."""
    with persistent_cache(str(tmp_path_factory.getbasetemp() / "jax_cache")) as path:
        yield path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.getbasetemp() / "data")
    old = os.environ.get("POLRL_DATA_DIR")
    os.environ["POLRL_DATA_DIR"] = path
    yield path
    if old is None:
        del os.environ["POLRL_DATA_DIR"]
    else:
        os.environ["POLRL_DATA_DIR"] = old


def _config():
    c = importlib.import_module("experiments.arithmetic_rlhf_grpo").get_config("smoke")
    c.warmup.steps, c.total_steps = OVERRIDES["warmup"], OVERRIDES["total_steps"]
    c.checkpoint_every, c.eval_every = OVERRIDES["checkpoint_every"], OVERRIDES["eval_every"]
    return c


def _records(workdir):
    """metrics.jsonl without the wall-clock fields."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics_lib.read_metrics(str(workdir))]


@pytest.fixture(scope="module")
def straight_dir(data_dir, cache_dir, tmp_path_factory):
    """The workdir of an uninterrupted run."""
    workdir = tmp_path_factory.mktemp("straight")
    Trainer(build_spec(_config(), progress=False), str(workdir)).run()
    return workdir


@pytest.fixture(scope="module")
def straight(straight_dir):
    records = _records(straight_dir)
    assert [r["step"] for r in records if "loss" in r] == list(range(1, WARMUP + RL_STEPS + 1))
    return records


def _saved_paths(directory):
    """The '/'-joined paths of every array the newest checkpoint in ``directory`` holds."""
    manager = ocp.CheckpointManager(str(directory), item_handlers=ocp.PyTreeCheckpointHandler(),
                                    options=ocp.CheckpointManagerOptions(create=False, read_only=True))
    tree = manager.item_metadata(manager.latest_step()).tree
    manager.close()
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return ["/".join(str(getattr(e, "key", getattr(e, "idx", e))) for e in path) for path, _ in leaves]


def test_checkpoints_hold_no_frozen_model(straight_dir):
    """The reward model is in every step's state but in no checkpoint: only what training changes."""
    paths = _saved_paths(straight_dir / "checkpoints" / "rlhf")
    assert any(p.startswith("state/params/") for p in paths)
    assert not any(p.startswith("state/models") or "reward" in p for p in paths), paths


class _Crash(Exception):
    pass


def test_crash_then_resume_reproduces_the_straight_run(straight, tmp_path):
    trainer = Trainer(build_spec(_config(), progress=False), str(tmp_path))
    write = trainer.writer.write

    def write_then_crash(record):  # dies after logging step 3, before checkpointing it
        write(record)
        if record["step"] == WARMUP + 1 and "loss" in record:
            raise _Crash()

    trainer.writer.write = write_then_crash
    with pytest.raises(_Crash):
        trainer.run()
    trainer.writer.close()
    assert _records(tmp_path)[-1]["step"] == WARMUP + 1  # the line of the lost step is there...
    rl = tmp_path / "checkpoints" / "rlhf"
    assert checkpoint.PhaseCheckpointer(str(rl)).latest_step() is None
    # ...and a save killed half-way left a temporary directory: it must be ignored
    tmp = rl / "1.orbax-checkpoint-tmp-1234567890"
    tmp.mkdir(parents=True)
    (tmp / "garbage").write_text("half-written")

    Trainer(build_spec(_config(), progress=False), str(tmp_path)).run()
    assert _records(tmp_path) == straight  # ...and was dropped and recomputed: no duplicate


def _launch(workdir, data_dir, cache_dir):
    """The public launcher as a subprocess (same devices and matmul precision as this process)."""
    env = dict(os.environ, POLRL_DATA_DIR=data_dir, JAX_DEFAULT_MATMUL_PRECISION="float32", PYTHONPATH=str(ROOT),
               **subprocess_env(cache_dir))
    args = [sys.executable, "-m", "polrl.launch", "--config", "experiments/arithmetic_rlhf_grpo.py:smoke",
            f"--workdir={workdir}", "--progress=false",
            f"--config.warmup.steps={WARMUP}", f"--config.total_steps={RL_STEPS}",
            f"--config.checkpoint_every={OVERRIDES['checkpoint_every']}",
            f"--config.eval_every={OVERRIDES['eval_every']}"]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(proc, workdir, step, timeout=240.0):
    """Polls metrics.jsonl until a trained step >= ``step`` is logged."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before step {step}: {proc.communicate()}"
        if path.exists():
            lines = [ln for ln in path.read_text().splitlines() if '"loss"' in ln]
            if lines and metrics_lib.json.loads(lines[-1])["step"] >= step:
                return
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"step {step} did not appear within {timeout} s")


@pytest.mark.slow
def test_kill_9_then_sigterm_through_the_launcher(straight, data_dir, cache_dir, tmp_path):
    """kill -9 inside the GRPO phase; relaunch; SIGTERM (preemption) later; relaunch to the end."""
    proc = _launch(tmp_path, data_dir, cache_dir)
    _wait_for_step(proc, tmp_path, WARMUP + 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    proc = _launch(tmp_path, data_dir, cache_dir)
    _wait_for_step(proc, tmp_path, WARMUP + 4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "SIGTERM received; saved phase 'rlhf' step" in err
    assert metrics_lib.json.loads(out.strip().splitlines()[-1])["preempted"] is True
    # the step logged last is the one checkpointed at the boundary, before the end of the run
    last = [r for r in _records(tmp_path) if "loss" in r][-1]
    ckpt = checkpoint.PhaseCheckpointer(str(tmp_path / "checkpoints" / "rlhf"))
    assert ckpt.latest_step() == last["phase_step"] < RL_STEPS
    ckpt.close()

    Trainer(build_spec(_config(), progress=False), str(tmp_path)).run()
    assert _records(tmp_path) == straight


def test_metric_writer_truncates_to_whole_lines(tmp_path):
    writer = metrics_lib.MetricWriter(str(tmp_path), tensorboard=False)
    for step in range(4):
        writer.write({"step": step, "phase": "rl"})
    os.write(writer._fd, b'{"step": 4, "pha')  # a write cut by kill -9
    writer.close()
    writer = metrics_lib.MetricWriter(str(tmp_path), tensorboard=False)
    assert writer.lines == 4 and [r["step"] for r in metrics_lib.read_metrics(str(tmp_path))] == [0, 1, 2, 3]
    writer.truncate(2)  # back to a checkpoint taken after two lines
    writer.write({"step": 2, "phase": "rl"})
    assert [r["step"] for r in metrics_lib.read_metrics(str(tmp_path))] == [0, 1, 2]
    writer.truncate(10)  # fewer lines than the checkpoint recorded (deleted by hand): all kept
    assert writer.lines == 3
    writer.close()
    assert (tmp_path / "metrics.jsonl").read_text().endswith('"phase": "rl"}\n')
