"""Tests for polrl.train.steps: score, prepare, update, train_on_batch, init_state."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from polrl import advantages, algorithms, objectives
from polrl.core import Algorithm, Batch, Transform, chain
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig, make_sampler
from polrl.train import steps
from tiny_models import tiny_params

V = 8
CFG = TransformerConfig(
    vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
    value_head=True,
)


@functools.lru_cache(maxsize=None)
def _model():
    return tiny_params(CFG)


@functools.lru_cache(maxsize=None)
def _score_fn(temperature=1.0, values=False):
    graphdef, _ = _model()
    return jax.jit(functools.partial(steps.score, graphdef, temperature=temperature, values=values))


def _score(params, batch, temperature=1.0, values=False):
    return _score_fn(temperature, values)(params, batch)


def _jit(fn, alg):
    """``fn`` (a step function) jitted with the algorithm and the graphdef bound."""
    return jax.jit(functools.partial(fn, algorithm=alg, graphdef=_model()[0]))


def _init(alg, ref_params=None):
    """``init_state`` under jit (one compilation instead of one per optimizer-state leaf)."""
    fn = functools.partial(steps.init_state, algorithm=alg)
    return jax.jit(lambda p, r, ref: fn(p, rng=r, ref_params=ref))(_model()[1], jax.random.key(1), ref_params)


def _batch(b=4, t=3, seed=0) -> Batch:
    """Numpy-built batch (no device ops): row 1's prompt is left-padded, row 0's response is
    one token shorter; reward_b holds the row ids, groups are pairs of rows."""
    rng = np.random.default_rng(seed)
    valid = np.ones((b, 3), bool)
    valid[1, 0] = False
    prompt = np.where(valid, rng.integers(1, V, (b, 3)), 0).astype(np.int32)
    mask = np.ones((b, t), np.float32)
    mask[0, -1] = 0.0
    return Batch(
        prompt_bp=prompt,
        prompt_valid_bp=valid,
        response_bt=rng.integers(1, V, (b, t)).astype(np.int32),
        mask_bt=mask,
        reward_b=np.arange(b, dtype=np.float32),
        group_b=np.arange(b, dtype=np.int32) // 2,
    )


# ----------------------------------------------------------------------------- score


def test_score_matches_full_sequence_log_softmax():
    temperature = 0.7
    graphdef, params = _model()
    batch = _batch()
    out = _score(params, batch, temperature=temperature, values=True)

    @jax.jit
    def direct(params, batch):
        # the model's logits over the whole prompt ++ response, at the positions P−1 … P+T−2
        model = nnx.merge(graphdef, params)
        tokens = jnp.concatenate([batch.prompt_bp, batch.response_bt], axis=1)
        valid = jnp.concatenate([batch.prompt_valid_bp, jnp.ones(batch.response_bt.shape, bool)], 1)
        positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
        logits = model(tokens, positions, valid)  # [B, P+T, V]
        p, t = batch.prompt_bp.shape[1], batch.response_bt.shape[1]
        logp_btv = jax.nn.log_softmax(logits[:, p - 1 : p + t - 1] / temperature, axis=-1)
        logp = jnp.take_along_axis(logp_btv, batch.response_bt[..., None], axis=-1)[..., 0]
        entropy = -(jnp.exp(logp_btv) * logp_btv).sum(-1)
        hidden, _ = model.forward(tokens, positions, valid)
        return logp, entropy, model.value(hidden[:, p - 1 : p + t - 1])

    logp, entropy, value = direct(params, batch)
    np.testing.assert_allclose(out["logp_bt"], logp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["entropy_bt"], entropy, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["value_bt"], value, rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(value)).max() > 1e-3  # the value head is not trivially 0
    assert out["logp_bt"].shape == (4, 3) and out["value_bt"].shape == (4, 3)
    assert "value_bt" not in _score(params, batch)


def test_score_left_padding_is_invisible():
    graphdef, params = _model()
    batch = _batch()
    full = _score(params, batch)["logp_bt"]
    # row 1 has one left pad: scoring its unpadded prompt alone gives the same log-probs
    row = Batch(
        prompt_bp=batch.prompt_bp[1:2, 1:],
        prompt_valid_bp=batch.prompt_valid_bp[1:2, 1:],
        response_bt=batch.response_bt[1:2],
        mask_bt=batch.mask_bt[1:2],
    )
    alone = _score(params, row)["logp_bt"]
    np.testing.assert_allclose(full[1:2], alone, rtol=1e-5, atol=1e-5)


def test_score_matches_sampler_logp():
    graphdef, params = _model()
    batch = _batch()
    cfg = SamplingConfig(max_new_tokens=4, eos_id=7, temperature=0.8)
    out = make_sampler(graphdef, cfg)(params, batch.prompt_bp, batch.prompt_valid_bp, jax.random.key(3))
    scored = _score(
        params, batch.replace(response_bt=out.response_bt, mask_bt=out.mask_bt), temperature=0.8
    )["logp_bt"]
    np.testing.assert_allclose(scored * out.mask_bt, out.logp_bt, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- init_state


def _buffers(tree):
    return {x.unsafe_buffer_pointer() for x in jax.tree.leaves(tree)}


def test_init_state_copies_reference():
    _, params = _model()
    alg = algorithms.grpo()
    assert "ref_logp" in alg.needs
    state = steps.init_state(params, alg, jax.random.key(0), ref_params=params)
    assert jax.tree.structure(state.ref_params) == jax.tree.structure(params)
    for r, p in zip(jax.tree.leaves(state.ref_params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(r, p)
    assert not (_buffers(state.ref_params) & _buffers(params))  # distinct buffers
    assert int(state.step) == 0
    assert optax.tree_utils.tree_get(state.opt_state, "count") == 0
    assert jax.tree.structure(state.prepare_state) == jax.tree.structure(alg.prepare.init())
    assert jax.tree.structure(state.objective_state) == jax.tree.structure(alg.objective.init())


def test_init_state_drops_unneeded_reference():
    _, params = _model()
    for alg in (algorithms.sft(), algorithms.ppo()):
        assert "ref_logp" not in alg.needs
        assert _init(alg, params).ref_params is None
    # kept for ppo with a KL penalty
    state = _init(algorithms.ppo(kl_coef=0.1), params)
    assert state.ref_params is not None


# ----------------------------------------------------------------------------- prepare


def test_prepare_errors_without_reference():
    graphdef, params = _model()
    alg = algorithms.grpo()
    state = _init(alg)  # no ref_params given
    with pytest.raises(ValueError, match="ref_params"):
        steps.prepare(state, _batch(), algorithm=alg, graphdef=graphdef)


def test_prepare_fills_declared_needs():
    graphdef, params = _model()
    batch = _batch()
    # a reference that differs from the policy
    ref = jax.tree.map(lambda x: np.asarray(x) * 0.5, params)
    cur = _score(params, batch, values=True)

    alg = algorithms.grpo()  # ref_logp, one update per batch
    out, _ = _jit(steps.prepare, alg)(_init(alg, ref), batch)
    np.testing.assert_allclose(out.ref_logp_bt, _score(ref, batch)["logp_bt"], rtol=1e-6)
    assert out.old_logp_bt is None  # π_old = π_θ, no forward
    assert out.old_value_bt is None and out.adv_bt is not None

    alg = algorithms.ppo()  # values, 2 × 2 updates per batch
    out, _ = _jit(steps.prepare, alg)(_init(alg), batch)
    assert out.ref_logp_bt is None
    np.testing.assert_allclose(out.old_logp_bt, cur["logp_bt"], rtol=1e-6)
    np.testing.assert_allclose(out.old_value_bt, np.asarray(cur["value_bt"]) * batch.mask_bt, rtol=1e-6)
    assert out.return_bt is not None


# ----------------------------------------------------------------------------- update


def _recorder(n: int, k: int, epochs: int) -> Transform:
    """Objective transform that records each minibatch's row ids (stored in reward_b) in its
    state, and logs the minibatch size."""

    def init(example=None):
        return jnp.zeros((), jnp.int32), jnp.full((epochs * k, n // k), -1.0)

    def apply(batch, state, **extra):
        i, ids = state
        ids = ids.at[i].set(batch.reward_b)
        return batch.add_metrics(mb_rows=jnp.float32(batch.batch_size)), (i + 1, ids)

    return Transform(init, apply)


@jax.jit
def _nll_value_and_grad(params, batch):
    """Token-mean NLL of a batch and its gradient, computed directly."""

    def loss(p):
        logp = steps.score(_model()[0], p, batch)["logp_bt"]
        return (-logp * batch.mask_bt).sum() / batch.mask_bt.sum()

    value, grads = jax.value_and_grad(loss)(params)
    return value, grads, optax.tree.norm(grads)


def _nll_algorithm(optimizer, n, k, epochs):
    return Algorithm(
        prepare=chain(),
        objective=chain(objectives.nll(), _recorder(n, k, epochs), objectives.aggregate("token_mean")),
        optimizer=optimizer,
        num_epochs=epochs,
        num_minibatches=k,
    )


def test_update_splits_into_minibatches():
    graphdef, params = _model()
    n, k, epochs = 8, 2, 2
    batch = _batch(b=n)  # reward_b = row ids 0 … 7
    # Adam statistics advance but the parameters do not move (learning rate 0), so every
    # minibatch's gradient is taken at the initial parameters and can be recomputed here
    alg = _nll_algorithm(optax.chain(optax.scale_by_adam(), optax.scale(0.0)), n, k, epochs)
    state = _init(alg)
    new_state, metrics = _jit(steps.update, alg)(state, batch)
    # the optimizer saw epochs × minibatches = 4 steps; one iteration; the RNG moved on
    assert int(optax.tree_utils.tree_get(new_state.opt_state, "count")) == epochs * k
    assert int(new_state.step) == 1
    assert not np.array_equal(jax.random.key_data(new_state.rng), jax.random.key_data(state.rng))
    # the objective saw minibatches of n / k rows; each epoch's minibatches partition the rows
    assert float(metrics["mb_rows"]) == n // k
    count, ids = new_state.objective_state[1]
    assert int(count) == epochs * k
    ids = np.asarray(ids).astype(int)
    for e in range(epochs):
        np.testing.assert_array_equal(np.sort(ids[e * k : (e + 1) * k].ravel()), np.arange(n))

    # metrics are averages over the 4 minibatch steps: recompute each minibatch's loss and norm
    rows = [jax.tree.map(lambda x: np.asarray(x)[r], batch) for r in ids]
    losses, _, norms = zip(*[_nll_value_and_grad(params, mb) for mb in rows])
    assert np.std(norms) > 1e-4  # the minibatches differ, so the average is informative
    np.testing.assert_allclose(metrics["grad_norm"], np.mean(norms), rtol=1e-4)
    np.testing.assert_allclose(metrics["nll"], np.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], np.mean(losses), rtol=1e-5)


def test_update_rejects_indivisible_batch():
    graphdef, params = _model()
    alg = _nll_algorithm(optax.sgd(0.1), 6, 4, 1)
    state = _init(alg)
    with pytest.raises(ValueError, match="divisible"):
        steps.update(state, _batch(b=6), algorithm=alg, graphdef=graphdef)


def test_train_on_batch_prepares_then_applies_the_optimizer_to_the_objective_gradient():
    graphdef, params = _model()
    batch = _batch().replace(reward_b=np.array([1.0, 1.0, 0.0, 1.0], np.float32))  # group 0 (rows 0, 1) is flat
    alg = Algorithm(
        prepare=chain(advantages.drop_zero_variance_groups()),
        objective=chain(objectives.nll(), objectives.aggregate("token_mean")),
        optimizer=optax.sgd(0.5),
    )
    new_state, metrics = _jit(steps.train_on_batch, alg)(_init(alg), batch)
    # prepare's metrics are merged into the returned ones
    np.testing.assert_allclose(metrics["zero_variance_frac"], 0.5)
    assert int(new_state.step) == 1
    # one SGD step on the NLL of the prepared batch (rows 0 and 1 masked out by the filter)
    mask = batch.mask_bt.copy()
    mask[:2] = 0.0
    prepared = batch.replace(mask_bt=mask)
    value, grads, norm = _nll_value_and_grad(params, prepared)
    expected = jax.tree.map(lambda p, g: np.asarray(p) - 0.5 * np.asarray(g), params, grads)
    for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], value, rtol=1e-5)
    np.testing.assert_allclose(metrics["nll"], value, rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-5)
    ent = np.asarray(_score(params, batch)["entropy_bt"])
    m = prepared.mask_bt
    np.testing.assert_allclose(metrics["entropy"], (ent * m).sum() / m.sum(), rtol=1e-5)
    # the sizes of the batch handed to the update (before prepare's masks), for counting compute
    assert float(metrics["update_tokens"]) == batch.mask_bt.sum()
    assert float(metrics["update_prompt_tokens"]) == np.asarray(batch.prompt_valid_bp).sum()


def test_score_with_shared_prompts_equals_full_forward():
    """Groups sharing a prompt encode it once; log-probs, entropy and gradients are unchanged."""
    from flax import nnx

    from polrl.models import Transformer, TransformerConfig

    cfg = TransformerConfig(vocab_size=32, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2,
                            mlp_dim=64, max_len=32, value_head=True)
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    rng = np.random.default_rng(0)
    p, t, g, k = 5, 4, 3, 2
    prompt = rng.integers(3, 32, (k, p))
    valid = np.ones((k, p), bool)
    valid[0, :2] = False  # a left-padded prompt
    prompt[0, :2] = 0
    grouped = Batch(prompt_bp=jnp.repeat(prompt, g, 0), prompt_valid_bp=jnp.repeat(valid, g, 0),
                    response_bt=jnp.asarray(rng.integers(3, 32, (k * g, t))),
                    mask_bt=jnp.ones((k * g, t)), group_size=g)
    flat = grouped.replace(group_size=1)
    score = jax.jit(lambda prm, batch: steps.score(graphdef, prm, batch, values=True))
    shared = score(params, grouped)
    full = score(params, flat)
    for key in ("logp_bt", "entropy_bt", "value_bt"):
        np.testing.assert_allclose(shared[key], full[key], atol=1e-5)

    grad = jax.jit(jax.grad(lambda prm, batch: steps.score(graphdef, prm, batch)["logp_bt"].sum()))
    for a, b in zip(jax.tree.leaves(grad(params, grouped)), jax.tree.leaves(grad(params, flat))):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- the "old_mean_logp" need

CFG64 = TransformerConfig(
    vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
    value_head=True, dtype=jnp.float64, param_dtype=jnp.float64,
)


@functools.lru_cache(maxsize=None)
def _model64():
    with jax.enable_x64(True):
        return tiny_params(CFG64, seed=3)


def _brute_mean_logp(params, batch, temperature=1.0):
    """(1/V) Σ_v log π(v|s_t) in float64 numpy from the model's full logits over prompt ++ response."""
    model = nnx.merge(_model64()[0], params)
    tokens, positions, valid = steps.sequence_inputs(jnp.asarray(batch.prompt_bp), jnp.asarray(batch.prompt_valid_bp),
                                                     jnp.asarray(batch.response_bt))
    p, t = batch.prompt_bp.shape[1], batch.response_bt.shape[1]
    z = np.asarray(model(tokens, positions, valid), np.float64)[:, p - 1 : p + t - 1] / temperature
    top = z.max(-1, keepdims=True)
    logp = z - (top + np.log(np.exp(z - top).sum(-1, keepdims=True)))
    return logp.mean(-1)


def _needs_mean(fn=None):
    """An objective transform declaring the "old_mean_logp" need; ``fn(batch) -> batch``."""
    from polrl.core import stateless

    return stateless(fn or (lambda batch: batch), needs=("old_mean_logp",))


@pytest.mark.parametrize("chunk_size", [0, 2])
def test_score_mean_logp_matches_float64_brute_force(chunk_size):
    with jax.enable_x64(True):
        graphdef, params = _model64()
        batch = _batch(t=3)  # T = 3 is not a multiple of the chunk: the tail is padded
        fn = jax.jit(lambda prm, b, mean: steps.score(graphdef, prm, b, temperature=0.7, chunk_size=chunk_size,
                                                       mean_logp=mean), static_argnums=2)
        with_mean, default = fn(params, batch, True), fn(params, batch, False)
        assert "mean_logp_bt" not in default and with_mean["mean_logp_bt"].dtype == jnp.float64
        np.testing.assert_allclose(with_mean["mean_logp_bt"], _brute_mean_logp(params, batch, 0.7), rtol=1e-12)
        for key in ("logp_bt", "entropy_bt"):  # the other scores are the default path's
            np.testing.assert_allclose(with_mean[key], default[key], rtol=1e-12, atol=1e-14)


def test_prepare_fills_old_mean_logp_only_when_pi_old_is_recomputed():
    with jax.enable_x64(True):
        graphdef, params = _model64()
        batch = _batch()
        alg = algorithms.rover(num_minibatches=2)  # 2 updates per batch: π_old and m_old recomputed
        assert "old_mean_logp" in alg.needs
        state = steps.init_state(params, alg, jax.random.key(0))
        prepare = functools.partial(steps.prepare, algorithm=alg, graphdef=graphdef)
        out, _ = jax.jit(prepare)(state, batch)
        np.testing.assert_allclose(out.aux["old_mean_logp_bt"], _brute_mean_logp(params, batch), rtol=1e-12)
        np.testing.assert_allclose(out.old_logp_bt, steps.score(graphdef, params, batch)["logp_bt"], rtol=1e-12)
        eager, _ = prepare(state, batch)  # jit == no jit
        np.testing.assert_allclose(eager.aux["old_mean_logp_bt"], out.aux["old_mean_logp_bt"], rtol=1e-12)
        # one update per batch: π_old = π_θ, no forward, nothing filled (the need costs nothing)
        one = algorithms.rover(num_minibatches=1)
        out, _ = jax.jit(functools.partial(steps.prepare, algorithm=one, graphdef=graphdef))(state, batch)
        assert out.old_logp_bt is None and "old_mean_logp_bt" not in out.aux
        # several updates without the need: π_old only
        ppo = algorithms.ppo(num_epochs=2, num_minibatches=1)
        out, _ = jax.jit(functools.partial(steps.prepare, algorithm=ppo, graphdef=graphdef))(
            steps.init_state(params, ppo, jax.random.key(0)), batch.replace(old_value_bt=None))
        assert out.old_logp_bt is not None and "old_mean_logp_bt" not in out.aux


def test_update_fills_mean_logp_at_the_current_parameters_without_gradient():
    with jax.enable_x64(True):
        graphdef, params = _model64()

        def record(n_updates):
            def init(example=None):
                return jnp.zeros((), jnp.int32), jnp.zeros((n_updates, 2, 4, 3), jnp.float64)

            def apply(batch, state, **extra):
                i, seen = state
                pair = jnp.stack([batch.aux["mean_logp_bt"], batch.aux["old_mean_logp_bt"]])
                return batch, (i + 1, seen.at[i].set(pair))

            return Transform(init, apply, frozenset({"old_mean_logp"}))

        # the loss is Σ m_θ: were m_θ differentiable, SGD would move the parameters; the NLL gives
        # the update a gradient so that the second epoch scores moved parameters
        def algorithm(epochs, with_sum):
            terms = [objectives.nll()]
            if with_sum:
                terms.append(_needs_mean(lambda b: b.add_loss("m_sum", b.aux["mean_logp_bt"].sum())))
            return Algorithm(prepare=chain(), objective=chain(*terms, record(epochs), objectives.aggregate("token_mean")),
                             optimizer=optax.sgd(0.5), num_epochs=epochs)

        batch = _batch()
        alg = algorithm(2, with_sum=False)
        state = steps.init_state(params, alg, jax.random.key(0))
        prepared, _ = jax.jit(functools.partial(steps.prepare, algorithm=alg, graphdef=graphdef))(state, batch)
        update = jax.jit(functools.partial(steps.update, algorithm=alg, graphdef=graphdef))
        new_state, _ = update(state, prepared)
        seen = np.asarray(new_state.objective_state[1][1])
        # epoch 0 scores π_old: m_θ = m_old = brute force at the initial parameters
        np.testing.assert_allclose(seen[0, 0], seen[0, 1], rtol=1e-12)
        np.testing.assert_allclose(seen[0, 0], _brute_mean_logp(params, batch), rtol=1e-12)
        # epoch 1 scores the parameters after one SGD step (= a one-epoch update of the same batch)
        one = algorithm(1, with_sum=False)
        moved, _ = jax.jit(functools.partial(steps.update, algorithm=one, graphdef=graphdef))(
            steps.init_state(params, one, jax.random.key(0)), prepared)
        np.testing.assert_allclose(seen[1, 0], _brute_mean_logp(moved.params, batch), rtol=1e-12)
        np.testing.assert_allclose(seen[1, 1], seen[0, 1], rtol=0)  # m_old stays π_old's
        assert np.abs(seen[1, 0] - seen[1, 1]).max() > 1e-6
        # jit == no jit
        eager, _ = steps.update(state, prepared, algorithm=alg, graphdef=graphdef)
        np.testing.assert_allclose(eager.objective_state[1][1], seen, rtol=1e-12)
        # Σ m_θ adds nothing to the gradient: the same parameters as with the NLL alone
        summed = algorithm(2, with_sum=True)
        out, metrics = jax.jit(functools.partial(steps.update, algorithm=summed, graphdef=graphdef))(
            steps.init_state(params, summed, jax.random.key(0)), prepared)
        assert float(metrics["m_sum"]) != 0.0
        for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(new_state.params)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
