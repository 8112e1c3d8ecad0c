"""RLHF's reward (``collectors.with_reward_model``, ``config.reward_model``): the scores equal a
direct forward of the reward model on the same rows, the reward model's checkpoint reads back
exactly, and a missing path or a checkpoint of another shape is a one-line error."""
import dataclasses
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from polrl import algorithms, collectors, sharding
from polrl.core import PolicyState
from polrl.models import Transformer, TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.tasks import Task, token_exact_match
from polrl.train import steps
from polrl.train.build import build_spec, reward_model_structure
from polrl.train.checkpoint import PhaseCheckpointer
from polrl.train.reward_checkpoint import load_reward_params
from tiny_models import tiny_params, two_prompt_data

V, EOS, PAD, G = 8, 7, 0, 3
POLICY = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                           dtype=jnp.float64, param_dtype=jnp.float64)
REWARD = dataclasses.replace(POLICY, d_model=8, mlp_dim=16, value_head=True)


def _context(models=None):
    task = Task(name="tiny", tokenizer=None, max_prompt_len=3, max_answer_len=3, train=[], test=[], host_reward=None,
                device_reward=token_exact_match)
    return collectors.Context(graphdef=tiny_params(POLICY)[0], task=task, group_size=G,
                              sampling=SamplingConfig(max_new_tokens=4, eos_id=EOS, pad_id=PAD),
                              layout=sharding.layout_from_config(None), models=models or {})


def _direct(graphdef, params, batch):
    """The value head at the last token of each row's unpadded prompt ++ response (row by row)."""
    model = nnx.merge(graphdef, params)
    out = []
    for b in range(batch.batch_size):
        tokens = [int(x) for x, ok in zip(batch.prompt_bp[b], batch.prompt_valid_bp[b]) if ok]
        tokens += [int(x) for x, m in zip(batch.response_bt[b], batch.mask_bt[b]) if m]
        hidden, _ = model.forward(jnp.asarray([tokens]), jnp.arange(len(tokens))[None], jnp.ones((1, len(tokens)), bool))
        out.append(float(model.value(hidden[0, -1])))
    return np.asarray(out)


def test_scores_equal_a_direct_forward_of_the_reward_model():
    with jax.enable_x64(True):
        rm_graphdef, rm_params = tiny_params(REWARD, seed=1)
        ctx = _context({"rm": collectors.NamedModel(rm_graphdef, value_head=True)})
        policy = tiny_params(POLICY)[1]
        hidden = lambda r, m, a, av: (r[:, 0] + 10.0 * a[:, 0]).astype(jnp.float32)  # any function of rows and answers
        inner = collectors.group_samples(ctx)
        wrapped = collectors.with_reward_model("rm", hidden_score=hidden)(inner, ctx)
        state = steps.init_state(policy, algorithms.grpo(kl_coef=0.0), jax.random.key(0), collector=wrapped, prompts=2)
        state = state.replace(models={"rm": rm_params})
        data = two_prompt_data(V, PAD)
        batch, cstate, metrics = jax.jit(wrapped.collect)(state.collector_state, state, data, jax.random.key(3))
        plain, _, plain_metrics = inner.collect((), state, data, jax.random.key(3))
        np.testing.assert_array_equal(batch.response_bt, plain.response_bt)  # the same samples, rescored
        np.testing.assert_allclose(np.asarray(batch.reward_b), _direct(rm_graphdef, rm_params, batch), rtol=2**-23)
        r = np.asarray(batch.reward_b, np.float64)  # a float32 mean of 6 rows: error ≤ 6 ulp of the largest
        np.testing.assert_allclose(float(metrics["reward_mean"]), r.mean(), rtol=0, atol=6 * 2**-23 * np.abs(r).max())
        assert float(metrics["verifier_reward_mean"]) == float(plain.reward_b.mean())
        assert float(metrics["accuracy"]) == float(plain_metrics["accuracy"])
        answers = np.repeat(np.asarray(data["answer_ba"]), G, axis=0)
        np.testing.assert_allclose(float(metrics["hidden_score_mean"]),
                                   np.mean(np.asarray(plain.response_bt)[:, 0] + 10.0 * answers[:, 0]), rtol=1e-6)
        assert cstate == ()  # the reward model is the state's frozen model, not the collector's
        assert wrapped.example(2) == inner.example(2)


def test_a_host_collector_and_unknown_or_headless_models_are_refused():
    rm_graphdef = tiny_params(REWARD)[0]
    ctx = _context({"rm": collectors.NamedModel(rm_graphdef, value_head=True),
                    "policy_copy": collectors.NamedModel(tiny_params(POLICY)[0], value_head=False)})
    with pytest.raises(ValueError, match=r"with_reward_model: the inner collector runs on the host"):
        collectors.with_reward_model("rm")(collectors.offline_pairs(ctx), ctx)
    with pytest.raises(ValueError, match=r"with_reward_model\(model\)='judge' is not a model of this run; add it to "
                                         r"config.models"):
        collectors.with_reward_model("judge")(collectors.group_samples(ctx), ctx)
    with pytest.raises(ValueError, match=r"with_reward_model\(model\)='policy_copy' has no value head"):
        collectors.with_reward_model("policy_copy")(collectors.group_samples(ctx), ctx)


# ----------------------------------------------------------------------------- checkpoints

F32 = dataclasses.replace(REWARD, dtype=jnp.float32, param_dtype=jnp.float32)


def _save(directory, config, seed=0, devices=1):
    """A phase checkpoint of ``config``'s parameters with an AdamW state beside them (as a
    reward-model run writes), the arrays replicated over ``devices`` devices."""
    _, params = tiny_params(config, seed=seed)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:devices]), ("data",))
    params = jax.device_put(params, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    state = PolicyState(step=jnp.int32(5), rng=jax.random.PRNGKey(0), params=params,
                        opt_state=optax.adamw(1e-3).init(params))
    checkpoint = PhaseCheckpointer(str(directory))
    checkpoint.save(5, state, position=7, global_step=9)
    checkpoint.close()
    return params


def _abstract(config):
    return nnx.split(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))), nnx.Param)[1]


@pytest.mark.parametrize("devices", [1, 2])
def test_checkpoint_round_trip(tmp_path, devices):
    """Read back exactly, whatever mesh wrote the checkpoint."""
    params = _save(tmp_path / "rm", F32, seed=4, devices=devices)
    loaded = load_reward_params(str(tmp_path / "rm"), _abstract(F32))
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_from_a_larger_mesh_reads_in_a_one_device_process(tmp_path):
    params = _save(tmp_path / "rm", F32, seed=4, devices=2)
    script = (
        "import sys, jax, numpy as np\n"
        "from flax import nnx\n"
        "from polrl.models import Transformer, TransformerConfig\n"
        "from polrl.train.reward_checkpoint import load_reward_params\n"
        f"config = TransformerConfig(**{dict(vocab_size=F32.vocab_size, d_model=F32.d_model, num_layers=F32.num_layers, num_heads=F32.num_heads, num_kv_heads=F32.num_kv_heads, mlp_dim=F32.mlp_dim, head_dim=F32.head_dim, max_len=F32.max_len, value_head=True)!r})\n"
        "abstract = nnx.split(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))), nnx.Param)[1]\n"
        "loaded = load_reward_params(sys.argv[1], abstract)\n"
        "np.save(sys.argv[2], np.concatenate([np.ravel(x) for x in jax.tree.leaves(loaded)]))\n")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "rm"), str(tmp_path / "flat.npy")], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "flat.npy"),
                                  np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)]))


@pytest.mark.parametrize("saved,expected,message", [
    (dataclasses.replace(F32, d_model=16, mlp_dim=32), F32,
     r"the checkpoint's parameters do not fit the reward model of reward_model.model \(embed/value is \(8, 16\) float32 "
     r"in the checkpoint, \(8, 8\) float32 in the model.*set reward_model.model to the model it was trained as"),
    (dataclasses.replace(F32, value_head=False), F32, r"value_b/value missing from the checkpoint"),
    (F32, dataclasses.replace(F32, param_dtype=jnp.bfloat16), r"bfloat16 in the model"),
])
def test_a_checkpoint_of_another_shape_is_refused(tmp_path, saved, expected, message):
    _save(tmp_path / "rm", saved)
    with pytest.raises(ValueError, match=message) as e:
        load_reward_params(str(tmp_path / "rm"), _abstract(expected))
    assert "\n" not in str(e.value)


def test_missing_paths_are_refused(tmp_path):
    abstract = _abstract(F32)
    with pytest.raises(ValueError, match=r"reward_model.path is empty; set it to the reward model run's checkpoint"):
        load_reward_params("", abstract)
    with pytest.raises(ValueError, match=r"reward_model.path='.*nowhere' does not exist; train the reward model first"):
        load_reward_params(str(tmp_path / "nowhere"), abstract)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty' holds no finished checkpoint"):
        load_reward_params(str(tmp_path / "empty"), abstract)


# ----------------------------------------------------------------------------- config


@pytest.fixture
def smoke(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))
    from experiments import arithmetic_rlhf_grpo

    return arithmetic_rlhf_grpo.get_config("smoke")


def test_config_scores_the_phase_with_the_committed_reward_model(smoke):
    spec = build_spec(smoke, progress=False)
    phase = spec.phases[-1]
    assert phase.collector.init(phase.prompts_per_step) == ()  # not in the (checkpointed) collector state
    _, shapes = reward_model_structure(smoke.model, spec.task.tokenizer.vocab_size)
    expected = load_reward_params(smoke.reward_model.path, shapes)
    assert list(spec.models) == ["reward_model"]
    for a, b in zip(jax.tree.leaves(spec.models["reward_model"]), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change,message", [
    (dict(path="/nonexistent/rm"), r"reward_model.path='/nonexistent/rm' does not exist"),
    (dict(hidden_score="nearness"), r"reward_model.hidden_score='nearness'; use '' or one of \['closeness'\]"),
    (dict(model=dict(d_model=64, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=64, max_len=64)),
     r"do not fit the reward model of reward_model.model"),
])
def test_config_errors(smoke, change, message):
    smoke.reward_model.update(change)
    with pytest.raises(ValueError, match=message) as e:
        build_spec(smoke, progress=False)
    assert "\n" not in str(e.value)
