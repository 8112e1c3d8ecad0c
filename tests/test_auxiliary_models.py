"""Frozen auxiliary models (``config.models``, ``polrl.train.auxiliary``): loaded and checked once,
held in ``PolicyState.models`` beside the policy and laid out by the policy's sharding rules."""
import dataclasses
import importlib
import pathlib

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from polrl import collectors, sharding
from polrl.core import TEACHER
from polrl.tasks import BatchIterator
from polrl.train import metrics as metrics_lib
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer, init_phase_state, validate

ROOT = pathlib.Path(__file__).resolve().parents[1]
RM_SMOKE = str(ROOT / "experiments" / "data" / "arithmetic_reward_model_smoke")
CDR_SMOKE = ROOT / "experiments" / "data" / "arithmetic_cdr_smoke"


@pytest.fixture(autouse=True)
def data_dir(tmp_path_factory, monkeypatch):
    path = str(tmp_path_factory.getbasetemp() / "data")
    monkeypatch.setenv("POLRL_DATA_DIR", path)
    return path


def _rlhf():
    c = importlib.import_module("experiments.arithmetic_rlhf_grpo").get_config("smoke")
    c.warmup.steps = 0
    return c


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


def test_a_hugging_face_checkpoint_loads_as_a_frozen_model():
    """models.<name>.hf_path: the checkpoint's weights and shape; here the very checkpoint the
    policy starts from, so the frozen copy equals the policy's initial parameters."""
    c = importlib.import_module("experiments.gsm8k_grpo").get_config("smoke")
    c.models = dict(teacher=dict(hf_path=c.model.hf_path, model=dict(dtype="float32", max_len=128)))
    spec = build_spec(c, progress=False)
    assert list(spec.models) == ["teacher"]
    for a, b in zip(jax.tree.leaves(spec.models["teacher"]), jax.tree.leaves(spec.init_params), strict=True):
        np.testing.assert_array_equal(a, b)


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


# ----------------------------------------------------------------------------- meshes
# (kill -9 resume and checkpoints without frozen models: tests/test_resume.py runs RLHF's config)


def _one_step(config, workdir):
    """The shardings of the policy's and the reward model's embeddings, and the metrics of the
    first RLHF step (collect with the reward model, then update) under the config's mesh, through
    the trainer's own jitted step."""
    spec = build_spec(config, progress=False)
    trainer = Trainer(spec, str(workdir))
    phase = spec.phases[-1]
    state = init_phase_state(spec, phase, spec.init_params, jax.random.key(0))
    state = spec.layout.put(state, spec.layout.state_shardings(state))
    embeds = {"policy": state.params["embed"].sharding, "reward_model": state.models["reward_model"]["embed"].sharding}
    prompts = phase.collector.reads(phase.prompts_per_step)
    data = next(BatchIterator(phase.source, prompts, task=spec.task, seed=0))
    _, metrics = trainer._step_fn(phase)(state, trainer._device_data(data, prompts))  # donates the state
    return embeds, metrics_lib.to_python(sharding.to_host(metrics))


def test_frozen_models_are_laid_out_like_the_policy_and_a_mesh_step_matches_one_device(tmp_path):
    mesh = _rlhf()
    mesh.mesh.update(data=2, fsdp=2, tensor=2)
    embeds, on_mesh = _one_step(mesh, tmp_path / "mesh")
    assert embeds["reward_model"].spec == embeds["policy"].spec == P("tensor", "fsdp")
    assert len(embeds["reward_model"].device_set) == 8
    _, on_one = _one_step(_rlhf(), tmp_path / "one")
    for key in ("reward_mean", "rm_reward_std", "verifier_reward_mean", "hidden_score_mean", "loss"):
        np.testing.assert_allclose(on_mesh[key], on_one[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_a_collector_samples_rows_from_a_named_frozen_model():
    """group_samples(policy=<name>): the rows of rollout.sample with that model's parameters and
    the same key, version 0 (a frozen model), and the phase keeps no reference for it."""
    from polrl.rollout import sample
    from polrl.train import steps
    from test_collectors import _context, _data, _frozen_models, _model

    ctx = _context()
    collector = collectors.group_samples(ctx, policy="strong")
    assert collector.needs == frozenset()
    with jax.enable_x64(True):
        state = steps.init_state(_model()[1], _grpo(), jax.random.key(0), collector=collector, prompts=2)
        state = state.replace(models=_frozen_models(), step=jax.numpy.int32(7))
        data = _data(0, 2)
        batch, _, _ = jax.jit(collector.collect)((), state, data, jax.random.key(3))
        teacher = _frozen_models()["strong"]
        want = sample(ctx.graphdef, teacher, data["prompt_bp"], data["prompt_valid_bp"], jax.random.key(3),
                      ctx.sampling, ctx.group_size)
        np.testing.assert_array_equal(batch.response_bt, want.response_bt)
        own = sample(ctx.graphdef, _model()[1], data["prompt_bp"], data["prompt_valid_bp"], jax.random.key(3),
                     ctx.sampling, ctx.group_size)
        assert not np.array_equal(np.asarray(own.logp_bt), np.asarray(want.logp_bt))  # not the policy's rows
        np.testing.assert_allclose(batch.behavior_logp_bt, want.logp_bt, rtol=2**-23)  # Batch floats are float32
        assert np.all(np.asarray(batch.version_b) == 0)
        assert np.all(np.asarray(batch.source_b) == TEACHER)  # reported apart from the policy's rows
        assert collector.example(2).source_b.shape == batch.source_b.shape
    with pytest.raises(ValueError, match=r"group_samples: policy='teacher' is not a model of this run"):
        collectors.group_samples(ctx, policy="teacher")


def _grpo():
    from polrl import algorithms

    return algorithms.grpo(kl_coef=0.0)


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


def test_checkpoints_written_before_the_models_field_still_restore(tmp_path):
    """A phase checkpoint of the PolicyState without ``models`` (every run before frozen models
    existed) restores into ``checkpoint_item`` of today's state: the same fields, the same tree."""
    import flax
    import jax.numpy as jnp

    from polrl.core import PolicyState
    from polrl.train.checkpoint import PhaseCheckpointer
    from polrl.train.trainer import checkpoint_item

    fields = [f.name for f in dataclasses.fields(PolicyState) if f.name != "models"]
    Old = flax.struct.dataclass(type("OldPolicyState", (), {"__annotations__": {n: object for n in fields}}))
    values = dict(step=jnp.int32(3), rng=jax.random.PRNGKey(1), params={"w": jnp.arange(4.0)},
                  opt_state={"mu": jnp.ones(4)}, ref_params=None, prepare_state=None, objective_state=None,
                  collector_state=())
    ckpt = PhaseCheckpointer(str(tmp_path))
    ckpt.save(3, Old(**values), position=5, global_step=8)
    like = PolicyState(**{**values, "step": jnp.int32(0), "params": {"w": jnp.zeros(4)}}, models={"rm": jnp.ones(2)})
    restored = ckpt.load(checkpoint_item(like))
    state = like.replace(**restored.state)
    assert int(state.step) == 3 and restored.position == 5 and restored.global_step == 8
    np.testing.assert_array_equal(state.params["w"], np.arange(4.0))
    np.testing.assert_array_equal(state.models["rm"], np.ones(2))  # the frozen model comes from the run, not the file
    ckpt.close()
