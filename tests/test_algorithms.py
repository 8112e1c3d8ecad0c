"""Tests for the algorithm nouns (polrl.algorithms): sft, grpo, ppo, dpo.

Each noun builds, declares its needs and runs ``train_on_batch`` under jit; equivalences with
REINFORCE / RLOO; multi-epoch π_old; ``preference_pairs``; short learning tests.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import algorithms, ops
from polrl.core import Algorithm, Batch, Transform, chain, total_loss
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl import collectors, sharding
from polrl.tasks import Task
from polrl.train import steps
from tiny_models import tiny_params

V = 8
EOS = 7
CFG = TransformerConfig(
    vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
    value_head=True,
)


@functools.lru_cache(maxsize=None)
def _model():
    """(graphdef, params) of the tiny Transformer (see tests/tiny_models.py)."""
    return tiny_params(CFG)


class _Bigram(nnx.Module):
    """A minimal policy with the Transformer's interface (hidden = embedding of the current
    token): for tests of an algorithm's mechanics, which do not depend on the architecture and
    compile several times faster than with the Transformer."""

    def __init__(self):
        rng = np.random.default_rng(1)
        self.embed = nnx.Param(jnp.asarray(rng.normal(0, 0.5, (V, 4)), jnp.float32))
        self.head = nnx.Param(jnp.asarray(rng.normal(0, 0.5, (4, V)), jnp.float32))

    def forward(self, tokens_bt, positions_bt, valid_bt):
        return self.embed[...][tokens_bt], None

    def logits(self, hidden):
        return hidden @ self.head[...]


@functools.lru_cache(maxsize=None)
def _bigram():
    return nnx.split(_Bigram(), nnx.Param)


def _init(alg, model=_model):
    """``init_state`` (reference = the initial parameters) under jit."""
    _, params = model()
    fn = jax.jit(lambda p, r: steps.init_state(p, alg, r, ref_params=p))
    return fn(params, jax.random.key(0))


def _synthetic_batch(b=8, t=3, seed=0) -> Batch:
    """Rollout-like batch: groups of 4 rows, rewards that vary within each group."""
    rng = np.random.default_rng(seed)
    valid = np.ones((b, 2), bool)
    valid[1, 0] = False
    mask = np.ones((b, t), np.float32)
    mask[0, -1] = 0.0
    mask[3, 1:] = 0.0
    return Batch(
        prompt_bp=np.where(valid, rng.integers(1, V - 1, (b, 2)), 0).astype(np.int32),
        prompt_valid_bp=valid,
        response_bt=rng.integers(1, V - 1, (b, t)).astype(np.int32),
        mask_bt=mask,
        reward_b=np.array([1, 0, 0, 1, 0.5, 0, 1, 1][:b], np.float32),
        group_b=(np.arange(b) // 4).astype(np.int32),
        behavior_logp_bt=np.full((b, t), -5.0, np.float32) * mask,  # deliberately off-policy junk
    )


def _pair_batch() -> Batch:
    """Four preference pairs (rows 2i, 2i+1); the first row of each pair is preferred."""
    prompt = np.array([[1, 2], [1, 2], [3, 4], [3, 4], [2, 5], [2, 5], [4, 1], [4, 1]], np.int32)
    chosen = [[3, 3, EOS], [5, 1, EOS], [2, EOS, 0], [6, 6, 6]]
    rejected = [[4, 2, EOS], [1, 5, EOS], [6, EOS, 0], [2, 2, 2]]
    response = np.array([r for pair in zip(chosen, rejected) for r in pair], np.int32)
    mask = np.ones((8, 3), np.float32)
    mask[4:6, 2] = 0.0
    return Batch(
        prompt_bp=prompt,
        prompt_valid_bp=np.ones((8, 2), bool),
        response_bt=response,
        mask_bt=mask,
        reward_b=np.tile(np.array([1.0, 0.0], np.float32), 4),
        group_b=(np.arange(8) // 2).astype(np.int32),
        group_size=2,
    )


def _demo_batch() -> Batch:
    """SFT demonstrations: answer = prompt reversed, then EOS."""
    data = {
        "prompt_bp": np.array([[1, 2, 3], [0, 4, 5], [2, 2, 6], [0, 0, 3]], np.int32),
        "prompt_valid_bp": np.array([[1, 1, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]], bool),
        "answer_ba": np.array([[3, 2, 1, EOS], [5, 4, EOS, 0], [6, 2, 2, EOS], [3, EOS, 0, 0]], np.int32),
        "answer_valid_ba": np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], bool),
    }
    return collectors.demonstration_batch(data, pad_id=0)


@functools.lru_cache(maxsize=None)
def _train_fn(alg, model=_model):
    graphdef, _ = model()
    return jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef))


@functools.lru_cache(maxsize=None)
def _noun(name):
    """One shared algorithm object per noun (so its jitted train step is compiled once)."""
    return {
        "sft": lambda: algorithms.sft(learning_rate=1e-2),
        "grpo": lambda: algorithms.grpo(learning_rate=1e-2),
        "ppo": lambda: algorithms.ppo(learning_rate=1e-2),
        "dpo": lambda: algorithms.dpo(learning_rate=1e-2),
    }[name]()


@functools.lru_cache(maxsize=None)
def _run(name, num_steps):
    """``num_steps`` jitted train_on_batch calls of a noun on its fixed batch; metrics per step."""
    alg = _noun(name)
    batch = {"sft": _demo_batch, "dpo": _pair_batch}.get(name, _synthetic_batch)()
    state = _init(alg)
    history = []
    for _ in range(num_steps):
        state, metrics = _train_fn(alg)(state, batch)
        history.append(jax.tree.map(np.asarray, metrics))
    return state, history


# ----------------------------------------------------------------------------- nouns

BASE_KEYS = {"loss", "grad_norm", "entropy"}
PG_KEYS = {"pg", "clip_frac", "ratio_mean", "ratio_max"}
EXPECTED = {
    "sft": (frozenset(), BASE_KEYS | {"nll"}),
    "grpo": (frozenset({"ref_logp"}), BASE_KEYS | PG_KEYS | {"kl"}),
    "ppo": (frozenset({"values"}), BASE_KEYS | PG_KEYS | {"value", "value_error"}),
    "dpo": (frozenset({"ref_logp"}), BASE_KEYS | {"dpo", "pref_accuracy", "pref_margin"}),
}


ALL_NOUNS = {
    "sft", "dpo", "grpo", "ppo", "dr_grpo", "dapo", "gspo", "cispo", "rloo", "reinforce_pp", "remax",
    "sapo", "chord", "opmd", "asymre", "rec", "mdpo", "lp_reg", "rover", "otr", "copg", "drpo",
    "rl_plus", "remix", "tppo", "treepo", "flow_grpo", "clip_cov", "kl_cov", "gmpo", "gpg", "opo",
    "passk_grpo", "otb", "simpo", "orpo", "kto", "reward_model", "gepo",
    "opa_dpo", "ra_dpo",
    "spark",
    "dragon",
    "seppo",
    "process_reward_model",
    "digi_q",
    "dialtree_rpo",
    "gkd",
    "ded",
    "ampo",
    "sophia",
    "nlpo",
    "inspo",
}


def test_algorithms_module_lists_every_noun():
    assert set(algorithms.__all__) == ALL_NOUNS
    for name in ALL_NOUNS:
        assert algorithms.get(name) is getattr(algorithms, name)
    with pytest.raises(ValueError, match="reinforce"):
        algorithms.get("reinforce")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_noun_builds_and_declares_needs(name):
    alg = getattr(algorithms, name)()
    assert isinstance(alg, Algorithm)
    assert alg.needs == EXPECTED[name][0]
    # the reference is only asked for when a KL term exists (PPO's default has none)
    if name == "ppo":
        assert algorithms.ppo(kl_coef=0.1).needs == {"values", "ref_logp"}
    if name == "grpo":
        assert algorithms.grpo(kl_coef=0.0).needs == frozenset()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_noun_train_on_batch_under_jit(name):
    state, history = _run(name, 1)
    metrics = history[0]
    missing = EXPECTED[name][1] - set(metrics)
    assert not missing, f"{name}: missing metrics {missing}"
    for key, value in metrics.items():
        assert np.all(np.isfinite(value)), (name, key, value)
    assert int(state.step) == 1
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(_model()[1])))
    assert moved > 1e-4, f"{name} did not change the parameters"
    assert float(metrics["grad_norm"]) > 0


def test_first_step_values_at_the_reference():
    # at step 1 the policy is the reference and π_old = π_θ:
    grpo = _run("grpo", 1)[1][0]
    np.testing.assert_allclose(grpo["kl"], 0.0, atol=1e-6)  # k3 at d = 0
    np.testing.assert_allclose(grpo["ratio_mean"], 1.0, atol=1e-6)
    np.testing.assert_allclose(grpo["ratio_max"], 1.0, atol=1e-6)
    np.testing.assert_allclose(grpo["clip_frac"], 0.0)
    dpo = _run("dpo", 1)[1][0]
    # h = 0 for every pair: L = −log σ(0) = log 2 = 0.693147; accuracy (h > 0) is 0
    np.testing.assert_allclose(dpo["dpo"], 0.693147, rtol=1e-5)
    np.testing.assert_allclose(dpo["pref_accuracy"], 0.0)
    np.testing.assert_allclose(dpo["pref_margin"], 0.0, atol=1e-6)
    np.testing.assert_allclose(dpo["pref_pairs"], 4.0)


# ----------------------------------------------------------------------------- equivalences


def test_grpo_gradient_at_ratio_one_is_reinforce():
    graphdef, params = _model()
    alg = algorithms.grpo(kl_coef=0.0)
    assert alg.updates_per_batch == 1  # steps.prepare leaves old_logp_bt None: ratio = 1
    # kl_coef = 0 adds no KL term and needs no reference
    batch = _synthetic_batch()
    batch = batch.replace(ref_logp_bt=batch.behavior_logp_bt)
    prepared, _ = alg.prepare.apply(batch, alg.prepare.init(), step=0)
    assert prepared.old_logp_bt is None
    adv_bt = np.asarray(prepared.adv_bt)
    assert np.abs(adv_bt).max() > 0.5

    @jax.jit
    def grads(params):
        def grpo_loss(p):
            mb = prepared.replace(**steps.score(graphdef, p, prepared))
            mb, _ = alg.objective.apply(mb, alg.objective.init(), step=0)
            return total_loss(mb)

        def reinforce_loss(p):
            # −Σ_t A·log π per sequence, token mean within each sequence, mean over sequences
            logp = steps.score(graphdef, p, prepared)["logp_bt"]
            m = prepared.mask_bt
            per_seq = (-adv_bt * logp * m).sum(1) / m.sum(1)
            return per_seq.mean()

        return jax.grad(grpo_loss)(params), jax.grad(reinforce_loss)(params)

    g_grpo, g_reinforce = grads(params)
    for a, b in zip(jax.tree.leaves(g_grpo), jax.tree.leaves(g_reinforce)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert max(float(np.abs(np.asarray(x)).max()) for x in jax.tree.leaves(g_reinforce)) > 1e-3


def test_dr_grpo_advantage_is_rescaled_rloo():
    G = 4
    rng = np.random.default_rng(3)
    reward_b = rng.normal(size=3 * G).astype(np.float32)
    reward_b[2 * G:] = 0.25  # one flat group: both advantages are 0
    group_b = (np.arange(3 * G) // G).astype(np.int32)
    batch = Batch(
        prompt_bp=np.zeros((3 * G, 1), np.int32),
        prompt_valid_bp=np.ones((3 * G, 1), bool),
        response_bt=np.zeros((3 * G, 2), np.int32),
        mask_bt=np.ones((3 * G, 2), np.float32),
        reward_b=reward_b,
        group_b=group_b,
    )
    alg = algorithms.grpo(scale="none")
    out, _ = alg.prepare.apply(batch, alg.prepare.init(), step=0)
    rloo_b = reward_b - np.asarray(ops.leave_one_out_baseline(reward_b, group_b, 3 * G))
    np.testing.assert_allclose(np.asarray(out.adv_bt) * G / (G - 1), np.stack([rloo_b] * 2, 1), atol=1e-6)
    assert np.abs(rloo_b).max() > 0.1
    # the default (scale="std") is not the RLOO advantage
    std = algorithms.grpo().prepare
    std_out, _ = std.apply(batch, std.init(), step=0)
    assert not np.allclose(np.asarray(std_out.adv_bt)[:, 0] * G / (G - 1), rloo_b, atol=1e-3)


def _ratio_recorder(num_updates: int) -> Transform:
    """Objective transform that stores each minibatch step's ``ratio_mean`` in its state."""

    def init(example=None):
        return jnp.zeros((), jnp.int32), jnp.zeros((num_updates,), jnp.float32)

    def apply(batch, state, **extra):
        i, seen = state
        return batch, (i + 1, seen.at[i].set(batch.metrics["ratio_mean"]))

    return Transform(init, apply)


def test_grpo_two_epochs_recomputes_old_logp():
    grpo = algorithms.grpo(num_epochs=2, learning_rate=3e-2)
    alg = grpo._replace(objective=chain(grpo.objective, _ratio_recorder(2)))
    # behavior_logp_bt is junk (−5): π_old must be recomputed from the parameters, not taken
    # from the sampler
    batch = _synthetic_batch()
    new_state, metrics = _train_fn(alg, _bigram)(_init(alg, _bigram), batch)
    count, seen = new_state.objective_state[1]
    assert int(count) == 2
    seen = np.asarray(seen)
    # first minibatch: θ = θ_old, so the recomputed π_old gives ratio 1
    np.testing.assert_allclose(seen[0], 1.0, atol=1e-5)
    # second epoch: θ has moved away from the (stored, not None) π_old, so the ratio is not 1
    assert abs(seen[1] - 1.0) > 1e-4
    np.testing.assert_allclose(metrics["ratio_mean"], seen.mean(), rtol=1e-6)


def test_dpo_minibatches_keep_pairs_together():
    alg = algorithms.dpo(num_minibatches=4)  # 4 pairs → one pair per minibatch of 2 rows
    state = _init(alg)
    for seed in range(3):
        _, metrics = _train_fn(alg)(state.replace(rng=jax.random.key(seed)), _pair_batch())
        # every minibatch holds exactly one whole pair, at the reference: L = log 2
        assert float(metrics["pref_pairs"]) == 1.0, (seed, metrics["pref_pairs"])
        np.testing.assert_allclose(metrics["dpo"], 0.693147, rtol=1e-3)


def test_preference_pairs_picks_best_and_worst():
    # group 0 rewards [0.5, 1, 0, 1] → best = first arg-max = row 1, worst = row 2
    # group 1 rewards [2, −1, 5, 0]  → best = row 4+2 = 6,          worst = row 4+1 = 5
    reward_b = np.array([0.5, 1.0, 0.0, 1.0, 2.0, -1.0, 5.0, 0.0], np.float32)
    rows = np.arange(8, dtype=np.int32)
    batch = Batch(
        prompt_bp=np.repeat(np.array([[1], [2]], np.int32), 4, axis=0),
        prompt_valid_bp=np.ones((8, 1), bool),
        response_bt=np.stack([rows, 10 * rows], 1),  # row id markers
        mask_bt=np.ones((8, 2), np.float32),
        reward_b=reward_b,
        group_b=rows // 4,
        behavior_logp_bt=-np.stack([rows, rows], 1).astype(np.float32),
    )
    batch = batch.replace(group_size=4)
    pairs = collectors.best_and_worst(batch)
    picked = [1, 2, 6, 5]
    np.testing.assert_array_equal(pairs.response_bt[:, 0], picked)
    np.testing.assert_array_equal(pairs.response_bt[:, 1], 10 * np.array(picked))
    np.testing.assert_array_equal(pairs.reward_b, [1.0, 0.0, 5.0, -1.0])
    np.testing.assert_array_equal(pairs.prompt_bp[:, 0], [1, 1, 2, 2])
    np.testing.assert_array_equal(pairs.behavior_logp_bt[:, 0], -np.array(picked, np.float32))
    np.testing.assert_array_equal(pairs.group_b, [0, 0, 1, 1])
    assert pairs.group_size == 2  # minibatches keep each pair whole
    # a flat group yields a tie (the same row twice), which the preference loss ignores
    tie = collectors.best_and_worst(batch.replace(reward_b=np.full(8, 3.0, np.float32)))
    np.testing.assert_array_equal(tie.response_bt[:, 0], [0, 0, 4, 4])


# ----------------------------------------------------------------------------- learning


def test_grpo_learns_first_token():
    graphdef, params = _model()
    sampling = SamplingConfig(max_new_tokens=2, eos_id=EOS)
    alg = algorithms.grpo(learning_rate=3e-2, kl_coef=0.0)
    num_prompts, group = 8, 8
    rng = np.random.default_rng(1)
    data = {
        "prompt_bp": rng.integers(0, V - 1, (num_prompts, 2)).astype(np.int32),
        "prompt_valid_bp": np.ones((num_prompts, 2), bool),
        "answer_ba": np.zeros((num_prompts, 1), np.int32),
        "answer_valid_ba": np.ones((num_prompts, 1), bool),
    }

    def reward_fn(response_bt, mask_bt, answer_ba, answer_valid_ba):
        return (response_bt[:, 0] == 3).astype(jnp.float32)

    task = Task(name="first_token", tokenizer=None, max_prompt_len=2, max_answer_len=1, train=(), test=(),
                host_reward=None, device_reward=reward_fn)
    ctx = collectors.Context(graphdef=graphdef, task=task, sampling=sampling, group_size=group,
                             layout=sharding.layout_from_config(None))
    collector = collectors.group_samples(ctx)

    @jax.jit
    def step(state, key):
        batch, _, _ = collector.collect((), state, data, key)
        state, metrics = steps.train_on_batch(state, batch, algorithm=alg, graphdef=graphdef)
        return state, batch.reward_b.mean(), metrics["loss"]

    state = _init(alg)
    keys = jax.random.split(jax.random.key(7), 41)
    rewards = []
    for i in range(41):  # 40 updates; the 41st rollout measures the policy after them
        state, reward, loss = step(state, keys[i])
        rewards.append(float(reward))
        assert np.isfinite(float(loss))
    assert rewards[0] < 0.4, rewards[0]  # ≈ 1/8 at the start
    assert rewards[-1] > 0.8, rewards


def test_sft_nll_decreases():
    _, history = _run("sft", 15)
    nll = [float(m["nll"]) for m in history]
    assert nll[-1] < 0.5 * nll[0], nll
    assert all(np.isfinite(nll))


def test_dpo_reaches_full_preference_accuracy():
    _, history = _run("dpo", 15)
    acc = [float(m["pref_accuracy"]) for m in history]
    assert acc[0] == 0.0  # h = 0 at the reference
    assert acc[-1] == 1.0, acc
    assert float(history[-1]["dpo"]) < float(history[0]["dpo"])
