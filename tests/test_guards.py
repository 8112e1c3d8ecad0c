"""Guards: non-finite updates are skipped inside the jitted step, a streak of them stops the run,
and impossible configs fail before anything compiles, naming the field."""
import dataclasses
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from polrl import objectives
from polrl.core import Algorithm, Batch, chain
from polrl.models import TransformerConfig
from polrl.train import metrics as metrics_lib, steps
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer
from tiny_models import tiny_params

V = 8
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16)
LR = 0.1


@functools.lru_cache(maxsize=None)
def _model():
    return tiny_params(CFG)


def _batch(nan_rows=()) -> Batch:
    """4 rows in 2 groups of 2; rows in ``nan_rows`` carry a NaN loss weight (NaN loss and grads)."""
    rng = np.random.default_rng(0)
    mask = np.ones((4, 3), np.float32)
    mask[list(nan_rows), 0] = np.nan
    return Batch(prompt_bp=rng.integers(1, V, (4, 3)).astype(np.int32), prompt_valid_bp=np.ones((4, 3), bool),
                 response_bt=rng.integers(1, V, (4, 3)).astype(np.int32), mask_bt=mask,
                 group_b=np.arange(4, dtype=np.int32) // 2, group_size=2)


def _algorithm(num_minibatches):
    return Algorithm(prepare=chain(), objective=chain(objectives.nll(), objectives.aggregate("token_mean")),
                     optimizer=optax.sgd(LR), num_minibatches=num_minibatches)


@functools.lru_cache(maxsize=None)
def _update(num_minibatches):
    return jax.jit(functools.partial(steps.update, algorithm=_algorithm(num_minibatches), graphdef=_model()[0]))


def _state(alg):
    params = jax.tree.map(jnp.copy, _model()[1])
    return steps.init_state(params, alg, jax.random.key(0))


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_nonfinite_update_keeps_the_state_and_is_reported():
    alg = _algorithm(1)
    state = _state(alg)
    before = _leaves((state.params, state.opt_state, state.objective_state))
    new, metrics = _update(1)(state, _batch(nan_rows=(3,)))
    assert not np.isfinite(float(metrics["loss"]))
    assert float(metrics["skipped_nonfinite"]) == 1.0
    for a, b in zip(before, _leaves((new.params, new.opt_state, new.objective_state))):
        np.testing.assert_array_equal(a, b)
    assert int(new.step) == 1  # the iteration counts (the batch was consumed); nothing was applied
    # a finite batch is applied as usual
    new, metrics = _update(1)(_state(alg), _batch())
    assert float(metrics["skipped_nonfinite"]) == 0.0
    assert any(not np.array_equal(a, b) for a, b in zip(before, _leaves(new.params)))


def test_only_the_nonfinite_minibatch_is_skipped():
    """Two minibatches (one group each), the second group NaN: the result is one SGD step on
    the first group's gradient, taken at the initial parameters, whatever the minibatch order."""
    graphdef, params = _model()
    new, metrics = _update(2)(_state(_algorithm(2)), _batch(nan_rows=(2, 3)))
    np.testing.assert_allclose(metrics["skipped_nonfinite"], 0.5)
    good = jax.tree.map(lambda x: x[:2], _batch()).replace(group_b=np.zeros(2, np.int32))

    def loss(p):
        logp = steps.score(graphdef, p, good)["logp_bt"]
        return (-logp * good.mask_bt).sum() / good.mask_bt.sum()

    grads = jax.jit(jax.grad(loss))(params)
    expected = jax.tree.map(lambda p, g: np.asarray(p) - LR * np.asarray(g), params, grads)
    for a, b in zip(_leaves(new.params), _leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture
def data_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))


def _smoke(name="arithmetic_sft"):
    return importlib.import_module(f"experiments.{name}").get_config("smoke")


def test_a_streak_of_nonfinite_steps_stops_the_run(data_dir, tmp_path):
    config = _smoke()
    config.guards.max_nonfinite_steps = 2
    spec = build_spec(config, progress=False)
    poisoned = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), spec.init_params)
    with pytest.raises(RuntimeError, match=r"phase 'sft' step 2: 2 steps in a row had a non-finite loss or "
                                           r"gradient .*guards.max_nonfinite_steps=2"):
        Trainer(dataclasses.replace(spec, init_params=poisoned), str(tmp_path)).run()
    trained = [r for r in metrics_lib.read_metrics(str(tmp_path)) if "loss" in r]
    assert [r["skipped_nonfinite"] for r in trained] == [1.0, 1.0]


@pytest.mark.parametrize("field, value, message", [
    ("mesh.data", 3, r"mesh.data × mesh.fsdp × mesh.tensor = 3 × 1 × 1 = 3, but jax.device_count\(\) = 8"),
    ("mesh.data", 8, r"4 prompts per step do not split over mesh.data × mesh.fsdp = 8 batch shards; make "
                     r"the batch size \(demos.batch_size, or rollout.batch_size / rollout.group_size\) a "
                     r"multiple of 8"),
    ("model.dtype", "float16", r"model.dtype='float16'; use one of \['bfloat16', 'float32'\]"),
    ("guards.max_nonfinite_steps", 0, r"guards.max_nonfinite_steps=0 must be a positive int"),
])
def test_bad_configs_name_the_field(data_dir, tmp_path, field, value, message):
    config = _smoke("arithmetic_grpo")
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(ValueError, match=message):
        Trainer(build_spec(config, progress=False), str(tmp_path))


def test_bfloat16_compute_is_accepted(data_dir):
    config = _smoke("arithmetic_grpo")
    config.model.dtype = "bfloat16"
    spec = build_spec(config, progress=False)
    model = spec.graphdef, spec.init_params
    assert jax.tree.leaves(model[1])[0].dtype == jnp.float32  # float32 master weights
    from flax import nnx

    assert nnx.merge(*model).config.dtype == jnp.bfloat16
