"""Frozen auxiliary models (``config.models``, ``polrl.train.auxiliary``): loaded and checked once,
held in ``PolicyState.models`` beside the policy, laid out by the policy's sharding rules, never
written to checkpoints, and a run killed with ``kill -9`` resumes to the same numbers."""
import importlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import PartitionSpec as P

from jax_cache import persistent_cache, subprocess_env
from polrl import collectors, sharding
from polrl.train import auxiliary, metrics as metrics_lib
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer, init_phase_state, validate

ROOT = pathlib.Path(__file__).resolve().parents[1]
RM_SMOKE = str(ROOT / "experiments" / "data" / "arithmetic_reward_model_smoke")
CDR_SMOKE = ROOT / "experiments" / "data" / "arithmetic_cdr_smoke"
TIMING = ("step_time_s", "tokens_per_s")
STEPS = 4  # RLHF steps of the resumed runs (no warm-up)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    with persistent_cache(str(tmp_path_factory.getbasetemp() / "jax_cache")) as path:
        yield path


@pytest.fixture(autouse=True)
def data_dir(tmp_path_factory, monkeypatch):
    path = str(tmp_path_factory.getbasetemp() / "data")
    monkeypatch.setenv("POLRL_DATA_DIR", path)
    return path


def _rlhf(**overrides):
    c = importlib.import_module("experiments.arithmetic_rlhf_grpo").get_config("smoke")
    c.warmup.steps, c.total_steps, c.checkpoint_every, c.eval_every = 0, STEPS, 1, 2
    c.update(overrides)
    return c


def _records(workdir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics_lib.read_metrics(str(workdir))]


# ----------------------------------------------------------------------------- the config section


def test_models_section_loads_named_models_into_the_spec_and_the_context():
    c = _rlhf()
    c.models = dict(judge=dict(path=RM_SMOKE, model=dict(c.model), value_head=True),
                    weak=dict(path=str(CDR_SMOKE / "weak")))
    spec = build_spec(c, progress=False)
    assert sorted(spec.models) == ["judge", "reward_model", "weak"]  # config.reward_model joins them
    for a, b in zip(jax.tree.leaves(spec.models["judge"]), jax.tree.leaves(spec.models["reward_model"]), strict=True):
        np.testing.assert_array_equal(a, b)  # the same file, read twice under two names
    phase = spec.phases[-1]
    state = init_phase_state(spec, phase, spec.init_params, jax.random.key(0))
    assert sorted(state.models) == ["judge", "reward_model", "weak"]
    assert phase.collector.init(phase.prompts_per_step) == ()  # nothing frozen in the collector's state


@pytest.mark.parametrize("models,message", [
    (dict(policy=dict(path=RM_SMOKE)), r"config.models.policy: \['policy', 'reference'\] name the phase's own"),
    (dict(rm=dict(path=RM_SMOKE, hf_path="/x")), r"models.rm: set exactly one of path .* and hf_path"),
    (dict(rm=dict(value_head=True)), r"models.rm: set exactly one of path"),
    (dict(rm=dict(path=RM_SMOKE, value_head="yes")), r"models.rm.value_head='yes' must be True or False"),
    (dict(rm=dict(path=RM_SMOKE, head=True)), r"models.rm.head is not a model field"),
    (dict(rm=dict(path=RM_SMOKE)), r"models.rm.path=.*value_b/value not in the model"),
    (dict(rm=dict(path="/nonexistent/rm")), r"models.rm.path='/nonexistent/rm' does not exist"),
    (dict(rm=dict(hf_path="/some/hf", value_head=True)), r"models.rm.value_head=True with hf_path: the value head "
                                                         r"would be random"),
    (dict(reward_model=dict(path=RM_SMOKE, value_head=True)), r"config.reward_model loads a model named "
                                                              r"'reward_model', which config.models also defines"),
])
def test_models_section_errors_name_the_field(models, message):
    c = _rlhf()
    c.models = models
    with pytest.raises(ValueError, match=message) as e:
        build_spec(c, progress=False)
    assert "\n" not in str(e.value)


def test_a_collector_naming_a_model_the_run_lacks_fails_at_build():
    c = importlib.import_module("experiments.chain_mcts_dpo").get_config("smoke")
    c.collector_kwargs.update(prm="prm", prefix_weight=0.5)
    with pytest.raises(ValueError, match=r"mcts_pairs: prm='prm' is not a model of this run; add it to config.models"):
        build_spec(c, progress=False)
    c.models = dict(prm=dict(path=RM_SMOKE, model=dict(_rlhf().model), value_head=True))
    spec = build_spec(c, progress=False)  # the PRM is a value-head model over the same characters
    validate(spec)  # the search with the PRM traced on the phase's shapes
    assert list(spec.models) == ["prm"]


def test_the_reference_as_a_frozen_model_is_not_loaded_twice():
    c = importlib.import_module("experiments.arithmetic_cdr_dpo").get_config("smoke")
    c.density_ratio.weak = "reference"
    spec = build_spec(c, progress=False)
    assert list(spec.models) == ["cdr_strong"]
    assert "reference" in spec.phases[-1].collector.needs


# ----------------------------------------------------------------------------- checkpoints and resume


def _launch(workdir, data_dir, cache_dir):
    env = dict(os.environ, POLRL_DATA_DIR=data_dir, JAX_DEFAULT_MATMUL_PRECISION="float32", PYTHONPATH=str(ROOT),
               **subprocess_env(cache_dir))
    args = [sys.executable, "-m", "polrl.launch", "--config", "experiments/arithmetic_rlhf_grpo.py:smoke",
            f"--workdir={workdir}", "--progress=false", "--config.warmup.steps=0", f"--config.total_steps={STEPS}",
            "--config.checkpoint_every=1", "--config.eval_every=2"]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(proc, workdir, step, timeout=240.0):
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


def _saved_paths(directory):
    """The '/'-joined paths of every array a phase checkpoint holds."""
    manager = ocp.CheckpointManager(str(directory), item_handlers=ocp.PyTreeCheckpointHandler(),
                                    options=ocp.CheckpointManagerOptions(create=False, read_only=True))
    tree = manager.item_metadata(manager.latest_step()).tree
    manager.close()
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return ["/".join(str(getattr(e, "key", getattr(e, "idx", e))) for e in path) for path, _ in leaves]


@pytest.mark.slow
def test_kill_9_resumes_exactly_and_checkpoints_hold_no_frozen_model(data_dir, cache_dir, tmp_path):
    straight = tmp_path / "straight"
    Trainer(build_spec(_rlhf(), progress=False), str(straight)).run()
    paths = _saved_paths(straight / "checkpoints" / "rlhf")
    assert any(p.startswith("state/params/") for p in paths)
    assert not any(p.startswith("state/models") or "reward" in p for p in paths), [p for p in paths if "models" in p]

    resumed = tmp_path / "resumed"
    proc = _launch(resumed, data_dir, cache_dir)
    _wait_for_step(proc, resumed, 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    proc = _launch(resumed, data_dir, cache_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert _records(resumed) == _records(straight)


# ----------------------------------------------------------------------------- meshes


def test_frozen_models_are_laid_out_like_the_policy_and_a_mesh_run_matches_one_device(tmp_path):
    one = _rlhf(total_steps=1, eval_every=0, checkpoint_every=0)
    mesh = _rlhf(total_steps=1, eval_every=0, checkpoint_every=0)
    mesh.mesh.update(data=2, fsdp=2, tensor=2)
    spec = build_spec(mesh, progress=False)
    phase = spec.phases[-1]
    state = init_phase_state(spec, phase, spec.init_params, jax.random.key(0))
    state = spec.layout.put(state, spec.layout.state_shardings(state))
    policy_embed, rm_embed = state.params["embed"], state.models["reward_model"]["embed"]
    assert rm_embed.sharding.spec == policy_embed.sharding.spec == P("tensor", "fsdp")
    assert len({s.device for s in rm_embed.addressable_shards}) == 8

    runs = {}
    for name, config in (("one", one), ("mesh", mesh)):
        Trainer(build_spec(config, progress=False), str(tmp_path / name)).run()
        runs[name] = [r for r in _records(tmp_path / name) if "loss" in r][0]
    for key in ("reward_mean", "rm_reward_std", "verifier_reward_mean", "hidden_score_mean", "loss"):
        np.testing.assert_allclose(runs["mesh"][key], runs["one"][key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_named_model_reads_the_state():
    ctx = collectors.Context(graphdef="policy-graph", task=None, sampling=None, group_size=1, layout=None,
                             models={"prm": collectors.NamedModel("prm-graph", value_head=True)})
    state = type("S", (), {"params": "p", "ref_params": "r", "models": {"prm": "q"}})()
    from polrl.collectors.context import named_model

    assert named_model(ctx, state, "policy", "t") == ("policy-graph", "p")
    assert named_model(ctx, state, "reference", "t") == ("policy-graph", "r")
    assert named_model(ctx, state, "prm", "t") == ("prm-graph", "q")
    with pytest.raises(ValueError, match=r"t reads the reference, but PolicyState.ref_params is None"):
        named_model(ctx, type("S", (), {"ref_params": None})(), "reference", "t")
    with pytest.raises(ValueError, match=r"t reads model 'teacher', which PolicyState.models does not hold"):
        named_model(ctx, state, "teacher", "t")
