"""GKD (``polrl.algorithms.gkd``, ``collectors.with_teacher_logits``, ``collectors.with_student_fraction``):
the generalized JSD on small distributions worked out by hand in float64 (β = 0.5, β = 0.1, the
forward and reverse KL ends), its limits and invariants, gradients against the closed forms and
finite differences, the per-sequence token mean, jit == no-jit, the teacher's logits against a
per-row forward, the λ coin's two sources, and a training step against a teacher equal to the
student (zero loss, zero gradient) at a sampling temperature other than 1."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import algorithms, collectors, sharding
from polrl.algorithms.gkd import distillation_divergence, generalized_jsd, kl_divergence
from polrl.core import ON_POLICY, TEACHER, Batch
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.tasks import Task, token_exact_match
from polrl.train import steps
from tiny_models import tiny_params, two_prompt_data

V, EOS, PAD, G = 8, 7, 0, 2
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                        dtype=jnp.float64, param_dtype=jnp.float64)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _log(*probs):
    return jnp.log(jnp.asarray(probs, jnp.float64))


P, Q = (0.5, 0.5), (0.9, 0.1)  # teacher p_T, student q_θ


def test_generalized_jsd_by_hand():
    # β = 0.5: M = (0.7, 0.3)
    kl_pm = 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)
    kl_qm = 0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)
    np.testing.assert_allclose(generalized_jsd(_log(*P), _log(*Q), 0.5), 0.5 * kl_pm + 0.5 * kl_qm, rtol=1e-13)
    # β = 0.1: M = 0.1 p + 0.9 q = (0.86, 0.14)
    kl_pm = 0.5 * math.log(0.5 / 0.86) + 0.5 * math.log(0.5 / 0.14)
    kl_qm = 0.9 * math.log(0.9 / 0.86) + 0.1 * math.log(0.1 / 0.14)
    np.testing.assert_allclose(generalized_jsd(_log(*P), _log(*Q), 0.1), 0.1 * kl_pm + 0.9 * kl_qm, rtol=1e-13)
    # the ends: forward KL(p_T ‖ q_θ) and reverse KL(q_θ ‖ p_T)
    forward = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    reverse = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    np.testing.assert_allclose(generalized_jsd(_log(*P), _log(*Q), 0.0), forward, rtol=1e-13)
    np.testing.assert_allclose(generalized_jsd(_log(*P), _log(*Q), 1.0), reverse, rtol=1e-13)


def test_the_limits_are_the_scaled_kls():
    """JSD(β) = β KL(p ‖ q) + O(β²) and (1 − β) KL(q ‖ p) + O((1 − β)²)."""
    p, q = _log(0.2, 0.3, 0.5), _log(0.6, 0.3, 0.1)
    for eps in (1e-4, 1e-5):
        np.testing.assert_allclose(generalized_jsd(p, q, eps) / eps, kl_divergence(p, q), rtol=10 * eps)
        np.testing.assert_allclose(generalized_jsd(p, q, 1 - eps) / eps, kl_divergence(q, p), rtol=10 * eps)


def test_invariants():
    rng = np.random.default_rng(0)
    p = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(5, 6)) * 2), -1)
    q = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(5, 6)) * 2), -1)
    for beta in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert np.all(np.asarray(generalized_jsd(p, q, beta)) >= 0)
        np.testing.assert_allclose(generalized_jsd(p, p, beta), 0.0, atol=1e-15)
    for beta in (0.1, 0.3, 0.5):
        # swapping the two distributions is the same as swapping β and 1 − β
        np.testing.assert_allclose(generalized_jsd(p, q, beta), generalized_jsd(q, p, 1 - beta), rtol=1e-12)
        # bounded by the entropy of the mixture weights (disjoint supports reach it)
        bound = -beta * math.log(beta) - (1 - beta) * math.log(1 - beta)
        assert np.all(np.asarray(generalized_jsd(p, q, beta)) <= bound)
    disjoint_p, disjoint_q = _log(1.0, 1e-300), _log(1e-300, 1.0)
    np.testing.assert_allclose(generalized_jsd(disjoint_p, disjoint_q, 0.5), math.log(2), rtol=1e-12)


def test_gradients():
    """∂/∂z of the forward KL(p ‖ softmax z) is q − p; of the reverse KL(softmax z ‖ p) it is
    q ⊙ (log q − log p − KL(q ‖ p)); JSD(β)'s against central finite differences."""
    p = _log(0.2, 0.3, 0.5)
    z = jnp.asarray([0.4, -1.0, 0.3], jnp.float64)
    q = jax.nn.softmax(z)
    loss = lambda z, beta: generalized_jsd(p, jax.nn.log_softmax(z), beta)
    np.testing.assert_allclose(jax.grad(loss)(z, 0.0), q - jnp.exp(p), rtol=1e-12)
    reverse = kl_divergence(jnp.log(q), p)
    np.testing.assert_allclose(jax.grad(loss)(z, 1.0), q * (jnp.log(q) - p - reverse), rtol=1e-12)
    for beta in (0.1, 0.5, 0.9):
        h = 1e-6
        numeric = [(loss(z.at[i].add(h), beta) - loss(z.at[i].add(-h), beta)) / (2 * h) for i in range(3)]
        np.testing.assert_allclose(jax.grad(loss)(z, beta), numeric, rtol=1e-7, atol=1e-10)


def _batch(rng, rows=3, width=4):
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], np.float64)[:rows, :width]
    return Batch(prompt_bp=jnp.zeros((rows, 1), jnp.int32), prompt_valid_bp=jnp.ones((rows, 1), bool),
                 response_bt=jnp.zeros((rows, width), jnp.int32), mask_bt=jnp.asarray(mask),
                 logits_btv=jnp.asarray(rng.normal(size=(rows, width, 5))),
                 aux={"teacher_logits_btv": jnp.asarray(rng.normal(size=(rows, width, 5)))})


def test_term_and_the_per_sequence_token_mean():
    batch = _batch(np.random.default_rng(1))
    tau, beta = 2.0, 0.5
    out, _ = distillation_divergence(beta=beta, temperature=tau).apply(batch, ())
    t = jax.nn.log_softmax(batch.aux["teacher_logits_btv"] / tau, -1)
    s = jax.nn.log_softmax(batch.logits_btv / tau, -1)
    np.testing.assert_allclose(out.terms["gkd"], generalized_jsd(t, s, beta), rtol=1e-12)
    m = batch.mask_bt
    np.testing.assert_allclose(out.metrics["gkd_forward_kl"], (kl_divergence(t, s) * m).sum() / m.sum(), rtol=1e-12)
    np.testing.assert_allclose(out.metrics["gkd_reverse_kl"], (kl_divergence(s, t) * m).sum() / m.sum(), rtol=1e-12)
    # the noun's loss: each row's mean over its own tokens, then the mean over rows
    alg = algorithms.gkd(beta=beta, temperature=1.0)
    loss_out, _ = alg.objective.apply(batch, alg.objective.init())
    d = np.asarray(generalized_jsd(jax.nn.log_softmax(batch.aux["teacher_logits_btv"], -1),
                                   jax.nn.log_softmax(batch.logits_btv, -1), beta))
    per_row = [d[0, :4].mean(), d[1, :2].mean(), d[2, :1].mean()]
    np.testing.assert_allclose(loss_out.losses["gkd"], np.mean(per_row), rtol=1e-12)


def test_the_teacher_gets_no_gradient_and_jit_equals_no_jit():
    batch = _batch(np.random.default_rng(2))
    alg = algorithms.gkd()

    def loss(student, teacher):
        b = batch.replace(logits_btv=student, aux={"teacher_logits_btv": teacher})
        return alg.objective.apply(b, alg.objective.init())[0].losses["gkd"]

    args = (batch.logits_btv, batch.aux["teacher_logits_btv"])
    g_student, g_teacher = jax.grad(loss, argnums=(0, 1))(*args)
    assert np.all(np.asarray(g_teacher) == 0) and np.any(np.asarray(g_student) != 0)
    assert np.all(np.asarray(g_student)[2, 1:] == 0)  # masked positions
    np.testing.assert_allclose(jax.jit(loss)(*args), loss(*args), rtol=1e-13)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(*args), jax.grad(loss)(*args), rtol=1e-12, atol=1e-15)


def test_errors():
    with pytest.raises(ValueError, match="beta=1.5"):
        algorithms.gkd(beta=1.5)
    with pytest.raises(ValueError, match="student_fraction=2"):
        algorithms.gkd(student_fraction=2)
    with pytest.raises(ValueError, match="temperature=0"):
        algorithms.gkd(temperature=0)
    batch = _batch(np.random.default_rng(3))
    with pytest.raises(ValueError, match="with_teacher_logits"):
        distillation_divergence().apply(batch.replace(aux={}), ())
    with pytest.raises(ValueError, match="vocabulary"):
        distillation_divergence().apply(batch.replace(aux={"teacher_logits_btv": batch.logits_btv[..., :3]}), ())
    assert algorithms.gkd().needs == frozenset({"logits"})


# ----------------------------------------------------------------------------- the collectors


def _context(temperature=1.0):
    task = Task(name="tiny", tokenizer=None, max_prompt_len=3, max_answer_len=3, train=[], test=[], host_reward=None,
                device_reward=token_exact_match)
    graphdef, params = tiny_params(CFG, seed=1)
    return collectors.Context(graphdef=graphdef, task=task, group_size=G,
                              sampling=SamplingConfig(max_new_tokens=4, eos_id=EOS, pad_id=PAD, temperature=temperature),
                              layout=sharding.layout_from_config(None),
                              models={"teacher": collectors.NamedModel(graphdef)},
                              params_template=jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params))


def _state(collector, alg=None):
    student, teacher = tiny_params(CFG, seed=1)[1], tiny_params(CFG, seed=2)[1]
    state = steps.init_state(student, alg or algorithms.gkd(), jax.random.key(0), collector=collector, prompts=2)
    return state.replace(models={"teacher": teacher})


def _teacher_logits_by_row(graphdef, params, batch, temperature):
    """The teacher's logits / τ at every response position, one forward per row on its unpadded tokens."""
    model = nnx.merge(graphdef, params)
    out = np.zeros(batch.response_bt.shape + (V,))
    for b in range(batch.batch_size):
        context = [int(x) for x, ok in zip(batch.prompt_bp[b], batch.prompt_valid_bp[b]) if ok]
        tokens = context + [int(y) for y in batch.response_bt[b]]
        hidden, _ = model.forward(jnp.asarray([tokens]), jnp.arange(len(tokens))[None], jnp.ones((1, len(tokens)), bool))
        out[b] = np.asarray(model.logits(hidden)[0, len(context) - 1:-1]) / temperature
    return out


def test_teacher_logits_are_the_teachers_forward_at_the_rollout_temperature():
    ctx = _context(temperature=0.7)
    inner = collectors.group_samples(ctx)
    wrapped = collectors.with_teacher_logits("teacher")(inner, ctx)
    state = _state(wrapped)
    args = ((), state, two_prompt_data(V, PAD), jax.random.key(3))
    batch, _, metrics = jax.jit(wrapped.collect)(*args)
    plain, _, _ = jax.jit(inner.collect)(*args)
    np.testing.assert_array_equal(batch.response_bt, plain.response_bt)  # the same rows
    expected = _teacher_logits_by_row(ctx.graphdef, state.models["teacher"], batch, 0.7)
    np.testing.assert_allclose(batch.aux["teacher_logits_btv"], expected, rtol=2**-22, atol=1e-6)  # stored float32
    assert batch.aux["teacher_logits_btv"].dtype == jnp.float32
    example = wrapped.example(2)
    assert example.aux["teacher_logits_btv"].shape == batch.aux["teacher_logits_btv"].shape
    assert "teacher_logp_mean" in metrics
    with pytest.raises(ValueError, match="gkd: teacher='nobody'"):
        collectors.with_teacher_logits("nobody")(inner, ctx)


def test_student_fraction_draws_from_one_source_per_step():
    ctx = _context()
    inner = collectors.group_samples(ctx)
    assert collectors.with_student_fraction("teacher", 1.0)(inner, ctx) is inner
    sources = {True: jax.jit(inner.collect), False: jax.jit(collectors.group_samples(ctx, policy="teacher").collect)}
    data = two_prompt_data(V, PAD)
    for fraction in (0.0, 0.5):
        wrapped = collectors.with_student_fraction("teacher", fraction)(inner, ctx)
        state = _state(wrapped)
        collect = jax.jit(wrapped.collect)
        seen = set()
        for k in range(6):
            batch, _, metrics = collect((), state, data, jax.random.key(k))
            rng = jax.random.split(jax.random.key(k))[1]
            student = float(metrics["student_rows"]) == 1.0
            seen.add(student)
            expected, _, _ = sources[student]((), state, data, rng)
            np.testing.assert_array_equal(batch.response_bt, expected.response_bt)
            np.testing.assert_array_equal(batch.source_b, np.full(4, ON_POLICY if student else TEACHER))
        assert seen == ({False} if fraction == 0.0 else {False, True})
    with pytest.raises(ValueError, match="student_fraction=1.5"):
        collectors.with_student_fraction("teacher", 1.5)


def test_a_step_against_a_teacher_equal_to_the_student_has_zero_loss():
    """With the teacher = the student's own parameters, every position's divergence is 0 and so is
    the gradient, at any sampling temperature if the teacher's logits follow the trainer's scoring
    convention (logits / τ). The teacher's logits are stored in float32 (a Batch's floats), so the
    float64 student differs from them by their rounding δ ≈ 2⁻²⁴|z|: the loss is O(δ²), the
    gradient O(δ); another teacher gives both far above."""
    ctx = _context(temperature=0.7)
    alg = algorithms.gkd(beta=0.5)
    collector = alg.collector(collectors.group_samples(ctx), ctx)
    state = _state(collector, alg)
    collect = jax.jit(collector.collect)
    train = jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=ctx.graphdef, temperature=0.7))
    same = state.replace(models={"teacher": state.params})
    batch, _, _ = collect((), same, two_prompt_data(V, PAD), jax.random.key(5))
    _, metrics = train(same, batch)
    assert abs(float(metrics["loss"])) < 1e-12 and float(metrics["grad_norm"]) < 1e-6
    batch, _, _ = collect((), state, two_prompt_data(V, PAD), jax.random.key(5))
    _, metrics = train(state, batch)
    assert float(metrics["loss"]) > 1e-4 and float(metrics["grad_norm"]) > 1e-4
