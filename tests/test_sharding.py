"""Sharding on the 8 fake CPU devices: rule mapping by hand, mesh errors, and sharded GRPO updates
and sampling that reproduce the one-device numbers with a stable state layout."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from polrl import algorithms, sharding
from polrl.core import Batch
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig, engine, sample
from polrl.train import steps
from tiny_models import tiny_params

# Every sharded dimension divides by the largest axis size used below (8).
CFG = TransformerConfig(vocab_size=16, d_model=16, num_layers=1, num_heads=4, num_kv_heads=2, mlp_dim=32,
                        max_len=16)
MESHES = [(8, 1, 1), (2, 4, 1), (2, 2, 2), (1, 4, 2)]
B, PROMPT, T, G = 16, 4, 4, 4
SAMPLING = SamplingConfig(max_new_tokens=4, eos_id=CFG.vocab_size, temperature=1.0)


# ----------------------------------------------------------------------------- rules, by hand


def test_logical_spec_takes_the_first_fitting_rule():
    mesh = sharding.make_mesh(2, 2, 2)
    spec = lambda names, shape, rules=sharding.UPDATE_RULES: sharding.logical_spec(names, shape, rules, mesh)
    assert spec(("vocab", "embed"), (16, 16)) == P("tensor", "fsdp")
    assert spec(("embed", "kv_heads", "head_dim"), (16, 2, 4)) == P("fsdp", "tensor", None)
    assert spec(("norm",), (16,)) == P(None)  # no rule: replicated
    assert spec(("batch", None), (8, 3)) == P(("data", "fsdp"), None)
    # one KV head cannot split over tensor = 2: replicated instead of padded
    assert spec(("embed", "kv_heads", "head_dim"), (16, 1, 4)) == P("fsdp", None, None)
    # a mesh axis is used once per array: the second "mlp" finds tensor taken
    assert spec(("mlp", "mlp"), (8, 8)) == P("tensor", None)
    # rollout rules: weights only on tensor (replicated over data and fsdp)
    assert spec(("vocab", "embed"), (16, 16), sharding.ROLLOUT_RULES) == P("tensor", None)
    # ordered fallbacks: the first rule does not divide 6, the second does
    rules = (("x", ("data", "fsdp")), ("x", "tensor"))
    assert spec(("x",), (6,), rules) == P("tensor")


def test_config_built_expert_mesh_splits_experts_and_the_batch():
    """mesh.expert = 2 adds an expert axis (batch axes first, tensor innermost): experts split over
    it, the batch over data × fsdp × expert (data × fsdp where 4 does not divide it); without it
    the mesh and every spec are the three-axis ones."""
    layout = sharding.layout_from_config(dict(fsdp=2, tensor=2, expert=-1))
    mesh = layout.mesh
    assert mesh.axis_names == ("data", "fsdp", "expert", "tensor")
    assert dict(mesh.shape) == {"data": 1, "fsdp": 2, "expert": 2, "tensor": 2}
    assert layout.batch_axes == ("data", "fsdp", "expert") and layout.batch_shards == 4
    assert layout.batch_sharding(2).spec == P(("data", "fsdp", "expert"), None)
    spec = lambda names, shape, rules=sharding.UPDATE_RULES: sharding.logical_spec(names, shape, rules, mesh)
    assert spec(("expert", "embed", "mlp"), (4, 16, 8)) == P("expert", "fsdp", "tensor")
    assert spec(("expert", "embed", "mlp"), (4, 16, 8), sharding.ROLLOUT_RULES) == P("expert", None, "tensor")
    assert spec(("embed", "expert"), (16, 4)) == P("fsdp", "expert")  # the router
    assert spec(("expert", "embed", "mlp"), (3, 16, 8)) == P(None, "fsdp", "tensor")  # 3 experts over 2: replicated
    assert spec(("batch", None), (8, 3)) == P(("data", "fsdp", "expert"), None)
    assert spec(("batch", None), (6, 3)) == P(("data", "fsdp"), None)
    for rules in (sharding.UPDATE_RULES, sharding.ROLLOUT_RULES):
        assert spec(("batch", "vocab"), (8, 16), rules) == P(("data", "fsdp", "expert"), "tensor")
    plain = sharding.layout_from_config(dict(data=2, fsdp=2, tensor=2, expert=1))
    assert plain.mesh.axis_names == ("data", "fsdp", "tensor") and plain.batch_axes == ("data", "fsdp")
    assert sharding.logical_spec(("expert", "embed", "mlp"), (4, 16, 8), sharding.UPDATE_RULES, plain.mesh) == P(
        None, "fsdp", "tensor")
    # user rules may name the expert axis
    own = sharding.layout_from_config(dict(expert=8, update_rules=(("batch", "expert"), ("expert", "expert"))))
    assert own.batch_axes == ("expert",) and own.batch_shards == 8


def test_mesh_shape_fills_and_names_the_fields():
    assert sharding.mesh_shape(-1, 2, 2, 8) == dict(data=2, fsdp=2, expert=1, tensor=2)
    assert sharding.mesh_shape(1, -1, 1, 8) == dict(data=1, fsdp=8, expert=1, tensor=1)
    assert sharding.mesh_shape(1, 2, 2, 8, expert=-1) == dict(data=1, fsdp=2, expert=2, tensor=2)
    assert sharding.mesh_shape(-1, 1, 2, 8, expert=2) == dict(data=2, fsdp=1, expert=2, tensor=2)
    with pytest.raises(ValueError, match=r"^mesh.data × mesh.fsdp × mesh.tensor = 2 × 2 × 1 = 4.*device_count\(\) = 8"):
        sharding.mesh_shape(2, 2, 1, 8)
    with pytest.raises(ValueError, match=r"^mesh.data × mesh.fsdp × mesh.expert × mesh.tensor = 1 × 2 × 2 × 1 = 4, "):
        sharding.mesh_shape(1, 2, 1, 8, expert=2)
    with pytest.raises(ValueError, match=r"mesh.tensor=-1 cannot fill 8 devices"):
        sharding.mesh_shape(3, 1, -1, 8)
    with pytest.raises(ValueError, match=r"mesh.expert=-1 cannot fill 8 devices: the other mesh sizes multiply to 3"):
        sharding.mesh_shape(1, 1, 3, 8, expert=-1)
    with pytest.raises(ValueError, match=r"only one of mesh.data/fsdp/expert/tensor may be -1"):
        sharding.mesh_shape(-1, -1, 1, 8)
    with pytest.raises(ValueError, match=r"only one of mesh.data/fsdp/expert/tensor may be -1, got -1 for \['fsdp', 'expert'\]"):
        sharding.mesh_shape(1, -1, 1, 8, expert=-1)
    with pytest.raises(ValueError, match=r"mesh.fsdp=0"):
        sharding.mesh_shape(1, 0, 1, 8)


def test_layout_from_config_default_is_one_device():
    for default in (None, dict(data=1, fsdp=1, tensor=1), dict(data=1, fsdp=1, tensor=1, expert=1)):
        layout = sharding.layout_from_config(default)
        assert layout.mesh.devices.size == 1 and layout.batch_shards == 1
        assert layout.mesh.devices.flat[0] == jax.devices()[0]
    layout = sharding.layout_from_config(dict(data=-1, fsdp=2, tensor=1))
    assert dict(layout.mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1} and layout.batch_shards == 8
    with pytest.raises(ValueError, match=r"mesh.update_rules: rule .* unknown mesh axes \['model'\]"):
        sharding.layout_from_config(dict(data=8, update_rules=(("embed", "model"),)))
    for bad in (0, "2", 2.0):
        with pytest.raises(ValueError, match=rf"^mesh.expert={bad}: mesh sizes must be positive ints or -1 \(fill\)$"):
            sharding.layout_from_config(dict(fsdp=4, expert=bad))


def test_helpers_are_identities_without_a_layout():
    x = jnp.arange(8.0)
    assert sharding.constrain(x, ("batch",)) is x
    tree = {"a": x}
    assert sharding.constrain_batch(tree) is tree
    assert sharding.reshard_for_rollout(tree) is tree


# ----------------------------------------------------------------------------- sharded == one device


@functools.lru_cache(maxsize=None)
def _model():
    return tiny_params(CFG)


def _batch() -> Batch:
    rng = np.random.default_rng(0)
    valid = np.ones((B, PROMPT), bool)
    valid[::G, 0] = False  # the first prompt of every group is left-padded
    prompt = np.repeat(np.where(valid[::G], rng.integers(1, 16, (B // G, PROMPT)), 0), G, 0).astype(np.int32)
    mask = np.ones((B, T), np.float32)
    mask[1, 2:] = 0.0
    return Batch(prompt_bp=prompt, prompt_valid_bp=np.repeat(valid[::G], G, 0),
                 response_bt=rng.integers(1, 16, (B, T)).astype(np.int32), mask_bt=mask,
                 reward_b=rng.normal(size=B).astype(np.float32), group_b=np.arange(B, dtype=np.int32) // G,
                 behavior_logp_bt=np.zeros((B, T), np.float32))  # group_size 1: one full forward per row


ALGORITHM = algorithms.grpo(learning_rate=1e-2, kl_coef=0.0)  # the reference is covered by the trainer test
TRAIN = functools.partial(steps.train_on_batch, algorithm=ALGORITHM, graphdef=_model()[0])


def _state():
    params = jax.tree.map(jnp.copy, _model()[1])  # fresh buffers: the state is donated
    return steps.init_state(params, ALGORITHM, jax.random.key(0))


def _sample(params, prompt, valid, rng):
    return sample(_model()[0], params, prompt, valid, rng, SAMPLING)


def _serve(params, prompt, valid, rng):
    """Continuous batching: 16 requests (2 per prompt, varied budgets) through 8 slots."""
    model = nnx.merge(_model()[0], sharding.reshard_for_rollout(params))
    bank = engine.extend(model, engine.init_slots(model, prompt.shape[0], PROMPT), prompt, valid)
    budget = jnp.arange(2 * prompt.shape[0], dtype=jnp.int32) % 4 + 1
    return engine.serve(model, bank, jnp.arange(2 * prompt.shape[0]) // 2, rng, SAMPLING, num_slots=8, max_new_r=budget)


@functools.lru_cache(maxsize=None)
def _one_device():
    state, metrics = jax.jit(TRAIN)(_state(), _batch())
    b = _batch()
    out = jax.jit(_sample)(_model()[1], b.prompt_bp[::2], b.prompt_valid_bp[::2], jax.random.key(5))
    return jax.device_get((state.params, metrics, out))


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_sharded_update_and_sampling_match_one_device(shape):
    layout = sharding.Layout(sharding.make_mesh(*shape))
    params1, metrics1, sampled1 = _one_device()

    state = _state()
    state = layout.put(state, layout.state_shardings(state))
    before = jax.tree.map(lambda x: x.sharding, state)
    update = layout.jit(TRAIN, ("state", "batch"), ("state", "replicated"), donate_argnums=(0,))
    state, metrics = update(state, _batch())
    for a, b in zip(jax.tree.leaves(params1), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert metrics1.keys() == metrics.keys()
    for k in metrics1:
        np.testing.assert_allclose(metrics1[k], metrics[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # the parameters are really split: the embedding over tensor (vocab) and fsdp (width)
    embed = state.params["embed"]
    assert embed.sharding.spec == P("tensor", "fsdp")
    assert embed.addressable_shards[0].data.shape == (16 // shape[2], 16 // shape[1])
    state, _ = update(state, _batch())  # a second step keeps every leaf's layout
    after = jax.tree.map(lambda x: x.sharding, state)
    assert jax.tree.structure(before) == jax.tree.structure(after)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        assert a == b, (a, b)

    b = _batch()
    sampler = layout.jit(_sample, ("state", "batch", "batch", "replicated"), "batch")
    out = sampler(layout.put(_model()[1], layout.state_shardings(_model()[1])), b.prompt_bp[::2],
                  b.prompt_valid_bp[::2], jax.random.key(5))
    np.testing.assert_array_equal(sampled1.response_bt, out.response_bt)
    np.testing.assert_allclose(sampled1.logp_bt, out.logp_bt, rtol=1e-5, atol=1e-6)
    assert out.response_bt.sharding.spec == P(("data", "fsdp"))


def test_continuous_batching_under_a_mesh_matches_one_device():
    b = _batch()
    served1 = jax.jit(_serve)(_model()[1], b.prompt_bp[::2], b.prompt_valid_bp[::2], jax.random.key(6))
    layout = sharding.Layout(sharding.make_mesh(2, 2, 2))
    server = layout.jit(_serve, ("state", "batch", "batch", "replicated"), "replicated")
    served = server(layout.put(_model()[1], layout.state_shardings(_model()[1])), b.prompt_bp[::2],
                    b.prompt_valid_bp[::2], jax.random.key(6))
    np.testing.assert_array_equal(served1.tokens_sn, served.tokens_sn)
    np.testing.assert_array_equal(served1.length_s, served.length_s)
    np.testing.assert_array_equal(served1.length_s, np.arange(16) % 4 + 1)  # every budget, exactly
    np.testing.assert_allclose(served1.logp_sn, served.logp_sn, rtol=1e-5, atol=1e-6)


def test_moe_forward_and_grpo_update_on_a_config_built_expert_mesh_match_one_device():
    """A tiny MoE model on mesh.fsdp = tensor = expert = 2: its expert-stacked weights are split
    over expert (2 of the 4 experts per device), and its logits, one GRPO iteration (reference,
    π_old, loss, gradient, AdamW) and sampling (rollout rules, rows over data × fsdp × expert)
    equal the one-device ones (float64: only summation order differs)."""
    layout = sharding.layout_from_config(dict(fsdp=2, tensor=2, expert=2))
    with jax.enable_x64(True):
        config = dataclasses.replace(CFG, qk_norm=True, num_experts=4, experts_per_token=2, expert_mlp_dim=8,
                                     moe_layers=(0,), dtype=jnp.float64, param_dtype=jnp.float64)
        graphdef, params = tiny_params(config)
        split = layout.put(params, layout.state_shardings(params))
        moe = split["layers"][0]["mlp"]
        assert moe["experts_gate"].sharding.spec == P("expert", "fsdp", "tensor")
        assert moe["experts_gate"].addressable_shards[0].data.shape == (2, 8, 4)
        assert moe["experts_down"].sharding.spec == P("expert", "tensor", "fsdp")
        assert moe["router"].sharding.spec == P("fsdp", "expert")
        logits = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))
        seq = jnp.asarray(np.random.default_rng(0).integers(0, 16, (4, 6)), jnp.int32)
        np.testing.assert_allclose(logits(split, seq), logits(params, seq), rtol=1e-12, atol=1e-12)

        train = functools.partial(steps.train_on_batch, algorithm=ALGORITHM, graphdef=graphdef)
        fresh = lambda: steps.init_state(jax.tree.map(jnp.copy, params), ALGORITHM, jax.random.key(0))
        state1, metrics1 = jax.device_get(jax.jit(train)(fresh(), _batch()))
        state = layout.put(fresh(), layout.state_shardings(fresh()))
        update = layout.jit(train, ("state", "batch"), ("state", "replicated"), donate_argnums=(0,))
        state, metrics = update(state, _batch())
        b = _batch()
        sample_moe = lambda p, prompt, valid, rng: sample(graphdef, p, prompt, valid, rng, SAMPLING)
        sampled1 = jax.jit(sample_moe)(params, b.prompt_bp[::2], b.prompt_valid_bp[::2], jax.random.key(5))
        sampler = layout.jit(sample_moe, ("state", "batch", "batch", "replicated"), "batch")
        sampled = sampler(split, b.prompt_bp[::2], b.prompt_valid_bp[::2], jax.random.key(5))
    np.testing.assert_array_equal(sampled1.response_bt, sampled.response_bt)
    np.testing.assert_allclose(sampled1.logp_bt, sampled.logp_bt, rtol=1e-9, atol=1e-12)
    assert sampled.response_bt.sharding.spec == P(("data", "fsdp", "expert"))
    assert state.params["layers"][0]["mlp"]["experts_up"].sharding.spec == P("expert", "fsdp", "tensor")
    assert metrics1.keys() == metrics.keys()
    for k in metrics1:
        np.testing.assert_allclose(metrics1[k], metrics[k], rtol=1e-9, atol=1e-12, err_msg=k)
    for a, b in zip(jax.tree.leaves(state1.params), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert not np.allclose(jax.tree.leaves(state1.params)[0], jax.tree.leaves(params)[0])  # the step moved them
