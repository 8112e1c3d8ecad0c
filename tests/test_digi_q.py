"""Digi-Q (``digi_q`` noun, ``collectors.step_candidates``): hand-computed TD targets, twin max,
advantages, best-of-N choices and weights, the filtered BC loss and the soft target update; the
critic losses against a hand evaluation of one-unit heads; the collector's trajectories equal
``sample``, its features a full forward's hidden states; jit = no jit. Float64 tiny models."""
import functools
import importlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import algorithms, collectors, sharding
from polrl.core import Batch, PolicyState
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig, sample
from polrl.train import steps
from polrl.train.steps import sequence_inputs
from tiny_models import tiny_params

dq = importlib.import_module("polrl.algorithms.digi_q")           # the modules (the packages export the functions)
sc = importlib.import_module("polrl.collectors.step_candidates")

V, PAD, SEP, EOS = 8, 0, 5, 7
P, N, G, C, K = 3, 10, 2, 3, 3
KEY = 1
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=32,
                        dtype=jnp.float64, param_dtype=jnp.float64)
SAMPLING = SamplingConfig(max_new_tokens=N, eos_id=EOS, pad_id=PAD)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


# ----------------------------------------------------------------------------- formulas


def test_td_target_and_soft_update_hand_values():
    r, d, v = jnp.array([0.0, 1.0, 0.0]), jnp.array([0.0, 1.0, 1.0]), jnp.array([0.5, 0.9, 0.7])
    np.testing.assert_allclose(dq.td_target(r, d, v, 0.95), [0.95 * 0.5, 1.0, 0.0], rtol=1e-15)
    target, online = {"a": jnp.array([1.0, -2.0])}, {"a": jnp.array([3.0, 0.0])}
    np.testing.assert_allclose(dq.soft_update(target, online, 0.1)["a"], [0.9 + 0.3, -1.8], rtol=1e-15)
    np.testing.assert_array_equal(dq.soft_update(target, online, 1.0)["a"], online["a"])


def test_advantage_is_max_twin_q_minus_max_twin_v():
    values = {"q1": jnp.array([[0.2, 0.9], [0.1, 0.3]]), "q2": jnp.array([[0.4, 0.5], [0.6, 0.2]]),
              "v1": jnp.array([0.3, 0.5]), "v2": jnp.array([0.1, 0.7])}
    # max Q: [[0.4, 0.9], [0.6, 0.3]]; max V: [0.3, 0.7]
    np.testing.assert_allclose(dq.advantages(values), [[0.1, 0.6], [-0.1, -0.4]], atol=1e-15)
    logits = jax.tree.map(lambda x: jnp.log(x / (1 - x)), values)
    np.testing.assert_allclose(dq.advantages(dq.as_values(logits, "mc")), [[0.1, 0.6], [-0.1, -0.4]], atol=1e-12)


def test_best_of_n_choice_and_weight():
    adv = jnp.array([[0.05, 0.3, 0.2],     # n* = 1, 0.3 > 0.1 → w = 1
                     [0.2, 0.2, -1.0],     # tie → the first (the behaviour's action), w = 1
                     [0.1, -0.5, 0.0],     # A* = 0.1 is not > 0.1 → w = 0
                     [1.7, 0.0, 0.0],      # clipped to 1 → w = 1
                     [0.9, 0.0, 0.0]])     # the state does not exist → w = 0
    index, best, weight = dq.best_of_n(adv, jnp.array([1.0, 1.0, 1.0, 1.0, 0.0]), 0.1)
    np.testing.assert_array_equal(index, [1, 0, 0, 0, 0])
    np.testing.assert_allclose(best, [0.3, 0.2, 0.1, 1.7, 0.9])
    np.testing.assert_array_equal(weight, [1.0, 1.0, 0.0, 1.0, 0.0])


def test_filtered_bc_loss_hand_value():
    logp = jnp.array([[-0.5, -1.0, -2.0], [-0.1, -0.2, -0.3], [-3.0, -3.0, -3.0]])
    mask = jnp.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    weight, valid = jnp.array([1.0, 0.0, 1.0]), jnp.array([1.0, 1.0, 1.0])
    # −(1·(−1.5) + 0 + 1·(−3)) / 3 states
    np.testing.assert_allclose(dq.filtered_bc_loss(logp, mask, weight, valid), 4.5 / 3, rtol=1e-15)
    np.testing.assert_allclose(dq.filtered_bc_loss(logp, mask, weight, jnp.array([1.0, 0.0, 1.0])), 4.5 / 2, rtol=1e-15)


def _unit_critic(slopes, biases):
    """Heads h(x) = a·relu(x) + b on one-dimensional features (D = H = 1)."""
    head = lambda a, b: {"w1": jnp.ones((1, 1)), "b1": jnp.zeros((1,)), "w2": jnp.array([a]), "b2": jnp.array(b)}
    return {name: head(a, b) for name, a, b in zip(dq.HEADS, slopes, biases)}


def _transitions():
    """Two states, N = 2 candidates, one-dimensional features; state 1 is terminal with reward 1."""
    return {sc.STATE_FEATURE: jnp.array([[1.0], [2.0]]), sc.ACTION_FEATURE: jnp.array([[[3.0], [0.5]], [[-1.0], [4.0]]]),
            sc.STEP_REWARD: jnp.array([0.0, 1.0]), sc.STEP_DONE: jnp.array([0.0, 1.0]),
            sc.STATE_VALID: jnp.array([1.0, 1.0]), sc.OUTCOME: jnp.array([1.0, 0.0])}


def test_bellman_critic_losses_hand_values():
    critic = _unit_critic([1.0, 2.0, 0.5, -1.0], [0.0, 0.1, 0.2, 0.0])
    target = _unit_critic([0.5, 1.0, 1.0, 2.0], [0.0, 0.0, 0.1, -0.1])
    data = _transitions()
    losses = dq.critic_losses(critic, target, data, critic_target="bellman", gamma=0.9)
    # behaviour actions' features (= next states' features): 3.0 and −1.0 (relu → 0)
    # Q1 = [3, 0], Q2 = [6.1, 0.1]; V̄1(s′) = [1·3 + 0.1, 0.1], V̄2(s′) = [2·3 − 0.1, −0.1]
    # targets Q1: [0.9·3.1, 1], Q2: [0.9·5.9, 1]
    q1 = ((3 - 0.9 * 3.1) ** 2 + (0 - 1) ** 2) / 2
    q2 = ((6.1 - 0.9 * 5.9) ** 2 + (0.1 - 1) ** 2) / 2
    # V1(s) = 0.5·[1, 2] + 0.2, V2(s) = −[1, 2]; Q̄1(s, a⁰) = 0.5·[3, 0], Q̄2(s, a⁰) = [3, 0]
    v1 = ((0.7 - 1.5) ** 2 + (1.2 - 0.0) ** 2) / 2
    v2 = ((-1 - 3) ** 2 + (-2 - 0) ** 2) / 2
    for name, want in zip(dq.HEADS, (q1, q2, v1, v2)):
        np.testing.assert_allclose(losses[name], want, rtol=1e-13)
    half = dq.critic_losses(critic, target, {**data, sc.STATE_VALID: jnp.array([1.0, 0.0])}, critic_target="bellman",
                            gamma=0.9)
    np.testing.assert_allclose(half["q1"], (3 - 0.9 * 3.1) ** 2, rtol=1e-13)


def test_mc_critic_losses_are_cross_entropy_to_the_outcome_sign():
    critic = _unit_critic([1.0, 2.0, 0.5, -1.0], [0.0, 0.1, 0.2, 0.0])
    losses = dq.critic_losses(critic, critic, _transitions(), critic_target="mc", gamma=0.0)
    bce = lambda z, y: float(np.log1p(np.exp(z)) - y * z)
    # labels 1[outcome > 0] = [1, 0]; logits Q1 [3, 0], Q2 [6.1, 0.1], V1 [0.7, 1.2], V2 [−1, −2]
    for name, (z0, z1) in zip(dq.HEADS, ((3, 0), (6.1, 0.1), (0.7, 1.2), (-1, -2))):
        np.testing.assert_allclose(losses[name], (bce(z0, 1) + bce(z1, 0)) / 2, rtol=1e-13)


# ----------------------------------------------------------------------------- transforms


def _state_batch(seed=0, rows=4, n=3, t=5, d=6):
    rng = np.random.default_rng(seed)
    mask = (rng.uniform(size=(rows, n, t)) > 0.4).astype(np.float64)
    aux = {sc.CANDIDATES: jnp.asarray(rng.integers(1, V, (rows, n, t)), jnp.int32),
           sc.CANDIDATE_MASK: jnp.asarray(mask), sc.CANDIDATE_LOGP: jnp.asarray(-rng.uniform(size=(rows, n, t)) * mask),
           sc.STATE_FEATURE: jnp.asarray(rng.normal(size=(rows, d))),
           sc.ACTION_FEATURE: jnp.asarray(rng.normal(size=(rows, n, d))),
           sc.STEP_REWARD: jnp.array([0.0, 1.0, 0.0, 0.0]), sc.STEP_DONE: jnp.array([0.0, 1.0, 0.0, 1.0]),
           sc.STATE_VALID: jnp.array([1.0, 1.0, 1.0, 0.0]), sc.OUTCOME: jnp.array([1.0, 1.0, 0.0, 0.0])}
    return Batch(prompt_bp=jnp.ones((rows, 2), jnp.int32), prompt_valid_bp=jnp.ones((rows, 2), bool),
                 response_bt=aux[sc.CANDIDATES][:, 0], mask_bt=aux[sc.CANDIDATE_MASK][:, 0],
                 behavior_logp_bt=aux[sc.CANDIDATE_LOGP][:, 0], reward_b=aux[sc.OUTCOME], aux=aux)


def test_prepare_trains_the_critic_and_rows_become_the_chosen_candidates():
    alg = algorithms.digi_q(critic_steps=3, critic_hidden=4, threshold=0.0)
    batch = _state_batch()
    state = alg.prepare.init(batch)
    out, new = alg.prepare.apply(batch, state, step=jnp.asarray(0))
    assert not np.allclose(new["critic"]["critic"]["q1"]["w1"], state["critic"]["critic"]["q1"]["w1"])
    index, _, weight = dq.best_of_n(out.aux[dq.ADVANTAGE], batch.aux[sc.STATE_VALID], 0.0)
    np.testing.assert_array_equal(out.aux[dq.WEIGHT], weight)
    for r in range(4):
        np.testing.assert_array_equal(out.response_bt[r], batch.aux[sc.CANDIDATES][r, index[r]])
        np.testing.assert_array_equal(out.mask_bt[r], batch.aux[sc.CANDIDATE_MASK][r, index[r]])
    # the advantages are the updated critic's
    values = dq.critic_outputs(new["critic"]["critic"], batch.aux[sc.STATE_FEATURE], batch.aux[sc.ACTION_FEATURE])
    np.testing.assert_allclose(out.aux[dq.ADVANTAGE], dq.advantages(values), rtol=1e-12)


def test_soft_update_after_every_critic_step_and_warmup():
    batch = _state_batch()
    one = algorithms.digi_q(critic_steps=1, critic_hidden=4, tau=0.25)
    state = one.prepare.init(batch)
    _, after = one.prepare.apply(batch, state, step=jnp.asarray(0))
    want = dq.soft_update(state["critic"]["target"], after["critic"]["critic"], 0.25)
    for a, b in zip(jax.tree.leaves(after["critic"]["target"]), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    warm = algorithms.digi_q(critic_hidden=4, threshold=0.0, critic_warmup_steps=2)
    out, _ = warm.prepare.apply(batch, warm.prepare.init(batch), step=jnp.asarray(1))
    assert float(out.aux[dq.WEIGHT].sum()) == 0.0


def test_successful_behaviour_keeps_the_behaviour_action():
    alg = algorithms.digi_q(actor="successful_behaviour", critic_hidden=4)
    batch = _state_batch()
    out, _ = alg.prepare.apply(batch, alg.prepare.init(batch), step=jnp.asarray(0))
    np.testing.assert_array_equal(out.aux[dq.WEIGHT], [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(out.response_bt, batch.response_bt)
    np.testing.assert_allclose(float(out.metrics["actor/weight_fraction"]), 2 / 3)


def test_prepare_and_objective_jit_equal_no_jit():
    alg = algorithms.digi_q(critic_steps=2, critic_hidden=4, threshold=0.0, critic_target="mc")
    batch = _state_batch(seed=3)
    state = alg.prepare.init(batch)
    logp = jnp.asarray(-np.random.default_rng(1).uniform(size=batch.response_bt.shape))

    def run(batch, state):
        out, new = alg.prepare.apply(batch, state, step=jnp.asarray(0))
        out = out.replace(logp_bt=logp)
        return alg.objective.apply(out, alg.objective.init())[0].losses["filtered_bc"], out.metrics, new

    eager, jitted = run(batch, state), jax.jit(run)(batch, state)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_noun_errors_name_the_field():
    for kwargs, field in (({"critic_target": "td"}, "critic_target"), ({"actor": "awr"}, "actor"),
                          ({"threshold": 1.0}, "threshold"), ({"tau": 0.0}, "tau"), ({"critic_steps": 0}, "critic_steps"),
                          ({"gamma": 1.5}, "gamma")):
        with pytest.raises(ValueError, match=rf"digi_q: {field}="):
            algorithms.digi_q(**kwargs)
    with pytest.raises(TypeError, match=r"digi_q\(\) got unexpected keyword argument\(s\) \['beta'\]"):
        algorithms.digi_q(beta=0.1)
    with pytest.raises(ValueError, match="step_candidates"):
        algorithms.digi_q().prepare.init(_state_batch().replace(aux={}))


# ----------------------------------------------------------------------------- the collector


def toy_reward(response_bt, mask_bt, answer_ba, answer_valid_ba):
    """1 iff the row ended with EOS and holds an even number of 3s."""
    del answer_ba, answer_valid_ba
    real = mask_bt > 0
    ended = (real & (response_bt == EOS)).any(axis=1)
    threes = (real & (response_bt == 3)).sum(axis=1)
    return (ended & (threes % 2 == 0)).astype(jnp.float32)


def _data():
    rng = np.random.default_rng(1)
    prompt = rng.integers(1, V - 1, (2, P))
    prompt[1, 0] = PAD
    return {"prompt_bp": jnp.asarray(prompt, jnp.int32), "prompt_valid_bp": jnp.asarray(prompt != PAD),
            "answer_ba": jnp.zeros((2, 2), jnp.int32), "answer_valid_ba": jnp.ones((2, 2), bool)}


@functools.cache
def _collect():
    with jax.enable_x64(True):
        tokenizer = types.SimpleNamespace(encode=lambda text: [SEP] if text == "," else [1, 2])
        task = types.SimpleNamespace(name="toy", tokenizer=tokenizer, device_reward=toy_reward, step_separator=",",
                                     max_prompt_len=P)
        graphdef, params = tiny_params(CFG, seed=4)
        template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
        ctx = collectors.Context(graphdef=graphdef, task=task, sampling=SAMPLING, group_size=G,
                                 layout=sharding.layout_from_config(None), params_template=template)
        collector = collectors.step_candidates(ctx, candidates=C, max_steps=K)
        state = PolicyState(step=jnp.zeros((), jnp.int32), rng=None, params=None, opt_state=None, ref_params=params)
        batch, _, metrics = jax.jit(collector.collect)((), state, _data(), jax.random.key(KEY))
        assert jax.tree.map(lambda x: (x.shape, x.dtype), collector.example(2)) == jax.tree.map(
            lambda x: (x.shape, x.dtype), batch)
    return ctx, params, batch, metrics


def test_trajectories_are_the_behaviours_samples():
    """Candidate 0 of state (b, j) is step j of ``sample``'s row b with the row key; the steps of
    a trajectory tile its response; terminal steps carry the trajectory's reward."""
    ctx, params, batch, _ = _collect()
    row_key, _ = jax.random.split(jax.random.key(KEY))
    data = _data()
    ref = jax.jit(sample, static_argnums=(0, 5, 6))(ctx.graphdef, params, data["prompt_bp"], data["prompt_valid_bp"],
                                                    row_key, SAMPLING, G)
    mask = np.asarray(batch.aux[sc.CANDIDATE_MASK][:, 0]).reshape(2 * G, K, N)
    tokens = np.asarray(batch.aux[sc.CANDIDATES][:, 0]).reshape(2 * G, K, N)
    valid = np.asarray(batch.aux[sc.STATE_VALID]).reshape(2 * G, K)
    ref_tokens, ref_mask = np.asarray(ref.response_bt), np.asarray(ref.mask_bt)
    steps_seen = 0
    for b in range(2 * G):
        covered = mask[b].sum(axis=0)
        assert covered.max() <= 1
        np.testing.assert_array_equal(np.where(covered > 0, tokens[b].max(axis=0, where=mask[b] > 0, initial=0), 0),
                                      np.where(covered > 0, ref_tokens[b], 0))
        if valid[b].sum() < K or ref_mask[b].sum() == covered.sum():  # every step fit in the K states
            np.testing.assert_array_equal(covered, ref_mask[b])
        steps_seen += valid[b].sum()
    assert steps_seen >= 6
    reward = np.asarray(toy_reward(ref.response_bt, ref.mask_bt, None, None))
    np.testing.assert_array_equal(np.asarray(batch.aux[sc.OUTCOME]).reshape(2 * G, K), np.repeat(reward[:, None], K, 1))
    done = np.asarray(batch.aux[sc.STEP_DONE]).reshape(2 * G, K)
    assert (done.sum(axis=1) <= 1).all() and (done <= valid).all()
    np.testing.assert_array_equal(np.asarray(batch.aux[sc.STEP_REWARD]).reshape(2 * G, K), done * reward[:, None])


def test_features_are_the_frozen_models_hidden_states():
    """h(s_j) after the state's last token and h(s_j, a^n) after the candidate's last token equal a
    full forward's hidden states over prompt ++ response; candidates share the state's prefix."""
    ctx, params, batch, _ = _collect()
    model = nnx.merge(ctx.graphdef, params)
    rows, n = batch.batch_size, C
    cand = batch.aux[sc.CANDIDATES].reshape(rows * n, N)
    mask = np.asarray(batch.aux[sc.CANDIDATE_MASK]).reshape(rows * n, N)
    prompt = jnp.repeat(batch.prompt_bp, n, axis=0)
    tokens, positions, valid = sequence_inputs(prompt, jnp.repeat(batch.prompt_valid_bp, n, axis=0), cand)
    hidden = np.asarray(model.forward(tokens, positions, valid)[0])
    live = np.repeat(np.asarray(batch.aux[sc.STATE_VALID]) > 0, n)
    start = np.argmax(mask > 0, axis=1)
    end = N - 1 - np.argmax(mask[:, ::-1] > 0, axis=1)
    state = np.asarray(batch.aux[sc.STATE_FEATURE])
    action = np.asarray(batch.aux[sc.ACTION_FEATURE]).reshape(rows * n, -1)
    checked = 0
    for i in np.flatnonzero(live & (mask.sum(axis=1) > 0)):
        np.testing.assert_allclose(action[i], hidden[i, P + end[i]], rtol=2 ** -23, atol=1e-12)  # the Batch holds float32
        np.testing.assert_allclose(state[i // n], hidden[i, P - 1 + start[i]], rtol=2 ** -23, atol=1e-12)  # the Batch holds float32
        np.testing.assert_array_equal(np.asarray(cand[i, :start[i]]), np.asarray(cand[(i // n) * n, :start[i]]))
        checked += 1
    assert checked >= 12


def test_noun_trains_on_collected_rows_under_jit():
    ctx, params, batch, _ = _collect()
    alg = algorithms.digi_q(critic_hidden=8, threshold=0.0, learning_rate=1e-2)
    state = steps.init_state(params, alg, jax.random.key(0), example=batch)
    train = jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=ctx.graphdef))
    new, metrics = train(state, batch)
    assert int(new.step) == 1 and np.isfinite(float(metrics["filtered_bc"])) and float(metrics["filtered_bc"]) > 0
    for key in ("critic/q_loss", "critic/v_loss", "actor/weight_fraction", "actor/behaviour_chosen"):
        assert np.isfinite(float(metrics[key])), key
    moved = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(params)))
    assert moved > 0
