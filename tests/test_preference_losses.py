"""The offline pair-loss family (``objectives.preference_loss`` and the dpo / simpo / orpo / kto
nouns): TRL 1.16 comparison vectors, hand-computed values on a 2-pair example, gradient signs,
jit, validation, a bandit whose DPO optimum is known in closed form, and the reward-augmented
relabelling of pairs.

The TRL vectors (tests/fixtures/trl_preference_vectors.json) are written by
scripts/make_trl_preference_vectors.py, which runs TRL's own loss functions on fixed inputs.
Conventions where polrl and TRL differ are named in the tests that check them.
"""
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from polrl import algorithms, objectives
from polrl.core import Batch

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "trl_preference_vectors.json").read_text())
LOSS_NAME = {"sigmoid": "dpo", "robust": "dpo", "hinge": "dpo", "ipo": "dpo", "simpo": "simpo", "orpo": "orpo", "kto": "kto"}


def _batch(mask, logp, ref=None, reward=None, group=None, dtype=jnp.float64, **kw):
    mask = jnp.asarray(mask, dtype)
    b, t = mask.shape
    return Batch(
        prompt_bp=jnp.zeros((b, 1), jnp.int32),
        prompt_valid_bp=jnp.ones((b, 1), bool),
        response_bt=jnp.zeros((b, t), jnp.int32),
        mask_bt=mask,
        logp_bt=jnp.asarray(logp, dtype),
        ref_logp_bt=None if ref is None else jnp.asarray(ref, dtype),
        reward_b=jnp.asarray(np.tile([1.0, 0.0], b // 2) if reward is None else reward, dtype),
        group_b=jnp.asarray(np.arange(b) // 2 if group is None else group, jnp.int32),
        **kw,
    )


def _loss(t, batch, name):
    out, _ = t.apply(batch, t.init())
    return out.losses[name]


def _sp(x):  # −log σ(x) = log(1 + e^{−x})
    return math.log1p(math.exp(-x))


# ----------------------------------------------------------------------------- TRL vectors


def _fixture_case(case):
    kwargs = {"beta": case.get("beta", 1.0), "loss_type": case["loss_type"]}
    if "label_smoothing" in case:
        kwargs["label_smoothing"] = case["label_smoothing"]
    if "simpo_gamma" in case:
        kwargs["simpo_gamma"] = case["simpo_gamma"]
    if "orpo_lambda" in case:
        kwargs["orpo_lambda"] = case["orpo_lambda"]
    if case["loss_type"] == "kto":
        kwargs.update(kto_desirable_weight=case["desirable_weight"], kto_undesirable_weight=case["undesirable_weight"])
    mask = np.array(FIXTURE["mask_bt"])
    logp = np.array(FIXTURE["logp_bt"]) + case.get("logp_shift", 0.0) * mask
    aux = {"label_b": jnp.asarray(case["label_b"])} if "label_b" in case else {}
    batch = _batch(mask, logp, FIXTURE["ref_logp_bt"], aux=aux)
    return kwargs, batch


def _case_id(case):
    keys = ("loss_type", "beta", "label_smoothing", "simpo_gamma", "orpo_lambda", "desirable_weight", "logp_shift")
    return "-".join(f"{case[k]}" for k in keys if k in case)


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=_case_id)
def test_matches_trl_vectors(case):
    with jax.enable_x64(True):
        kwargs, batch = _fixture_case(case)
        name = LOSS_NAME[case["loss_type"]]
        if case["loss_type"] == "sigmoid" and case["label_smoothing"] > 0:
            # CONVENTION: TRL 1.16's DPO "sigmoid" ignores label_smoothing; polrl's smoothed sigmoid
            # is cDPO. TRL's number equals polrl's at ε = 0, and polrl's cDPO value differs.
            ours_cdpo = float(_loss(objectives.preference_loss(**kwargs), batch, name))
            assert abs(ours_cdpo - case["loss"]) > 1e-3
            kwargs["label_smoothing"] = 0.0
        t = objectives.preference_loss(**kwargs)
        # ORPO: TRL's full loss is (token-mean NLL of chosen incl. prompt) − mean(λ log σ(·)); the
        # odds-ratio part is compared here, polrl's NLL is the response-only mean-token NLL.
        loss, grad = jax.value_and_grad(lambda lp: _loss(t, batch.replace(logp_bt=lp), name))(batch.logp_bt)
        rtol = 1e-6 if case["loss_type"] == "orpo" else 1e-10  # TRL's odds_ratio_loss casts to float32
        np.testing.assert_allclose(float(loss), case["loss"], rtol=rtol)
        np.testing.assert_allclose(np.asarray(grad), case["grad_logp_bt"], rtol=max(rtol, 1e-9), atol=1e-7 if rtol > 1e-9 else 1e-12)
        if case["loss_type"] == "kto":
            # CONVENTION: TRL estimates z from mismatched pairs; the vectors give TRL the matched
            # rows as its "KL" completions, so both reference points are the same number.
            out, _ = t.apply(batch, t.init())
            np.testing.assert_allclose(float(out.metrics["kto_z"]), case["kto_z"], rtol=1e-10, atol=1e-12)


def test_fixture_covers_every_loss_type():
    assert {c["loss_type"] for c in FIXTURE["cases"]} == set(objectives.PREFERENCE_LOSS_TYPES)


# ----------------------------------------------------------------------------- hand-computed

# Pair 0 = rows (0, 1), chosen first; pair 1 = rows (2, 3), chosen SECOND (reward 2 > 0).
# log π per token (pad 9 on row 1 must not count); log π_ref = −1 on every response token.
MASK2 = [[1, 1], [1, 0], [1, 1], [1, 1]]
LOGP2 = [[-0.5, -0.5], [-1.0, -9.0], [-1.0, -1.0], [-0.25, -0.25]]
REF2 = [[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]]
REWARD2 = [1.0, 0.0, 0.0, 2.0]
# S = Σ log π: [−1, −1, −2, −0.5];  S_ref: [−2, −1, −2, −2];  s = S − S_ref: [1, 0, 0, 1.5]
# h = [1 − 0, 1.5 − 0] = [1, 1.5];  mean tokens ā: [−0.5, −1, −1, −0.25];  lengths [2, 1, 2, 2]
B = 0.5


def _lo(a):  # log odds of a mean token log-prob
    return a - math.log1p(-math.exp(a))


HAND = {
    # −log σ(βh): βh = [0.5, 0.75]
    ("sigmoid", 0.0): (_sp(0.5) + _sp(0.75)) / 2,
    # cDPO ε = 0.1: 0.9·(−log σ(βh)) + 0.1·(−log σ(−βh))
    ("sigmoid", 0.1): (0.9 * _sp(0.5) + 0.1 * _sp(-0.5) + 0.9 * _sp(0.75) + 0.1 * _sp(-0.75)) / 2,
    # robust ε = 0.1: [0.9·(−log σ(βh)) − 0.1·(−log σ(−βh))] / 0.8
    ("robust", 0.1): ((0.9 * _sp(0.5) - 0.1 * _sp(-0.5)) / 0.8 + (0.9 * _sp(0.75) - 0.1 * _sp(-0.75)) / 0.8) / 2,
    # hinge: max(0, 1 − βh) = [0.5, 0.25]
    ("hinge", 0.0): (0.5 + 0.25) / 2,
    # ipo: s̄ = s/|y| = [0.5, 0, 0, 0.75] → h̄ = [0.5, 0.75];  (h̄ − 1/(2·0.5))² = [0.25, 0.0625]
    ("ipo", 0.0): (0.25 + 0.0625) / 2,
    # simpo (γ = 0.5): Δā = [0.5, 0.75];  −log σ(0.5·Δā·… ) with β = 0.5: βΔā − γ = [−0.25, −0.125]
    ("simpo", 0.0): (_sp(0.5 * 0.5 - 0.5) + _sp(0.5 * 0.75 - 0.5)) / 2,
    # orpo (λ = 0.1): λ·(−log σ(lo(ā_w) − lo(ā_l)))
    ("orpo", 0.0): 0.1 * (_sp(_lo(-0.5) - _lo(-1.0)) + _sp(_lo(-0.25) - _lo(-1.0))) / 2,
}


@pytest.mark.parametrize("key", sorted(HAND), ids=lambda k: f"{k[0]}-{k[1]}")
def test_hand_computed_two_pairs(key):
    loss_type, eps = key
    with jax.enable_x64(True):
        t = objectives.preference_loss(beta=B, loss_type=loss_type, label_smoothing=eps)
        out, _ = t.apply(_batch(MASK2, LOGP2, REF2, REWARD2), t.init())
        np.testing.assert_allclose(float(out.losses[LOSS_NAME[loss_type]]), HAND[key], rtol=1e-12)
        np.testing.assert_allclose(float(out.metrics["pref_pairs"]), 2.0)
        np.testing.assert_allclose(float(out.metrics["pref_accuracy"]), 1.0)
        if loss_type == "orpo":  # NLL of the chosen responses: mean over pairs of −ā(y_w) = (0.5 + 0.25)/2
            np.testing.assert_allclose(float(out.losses["nll"]), 0.375, rtol=1e-12)
        # only the reference-based losses ask for a reference forward
        assert t.needs == (frozenset() if loss_type in ("simpo", "orpo") else frozenset({"ref_logp"}))


def test_hand_computed_kto():
    with jax.enable_x64(True):
        t = objectives.preference_loss(beta=B, loss_type="kto")
        out, _ = t.apply(_batch(MASK2, LOGP2, REF2, REWARD2), t.init())
        # r = [1, 0, 0, 1.5];  z = max(0, 2.5/4) = 0.625;  desirable (reward ≥ 0.5): rows 0, 3
        sig = lambda x: 1 / (1 + math.exp(-x))
        expected = ((1 - sig(B * (1 - 0.625))) + 2 * (1 - sig(B * (0.625 - 0))) + (1 - sig(B * (1.5 - 0.625)))) / 4
        np.testing.assert_allclose(float(out.losses["kto"]), expected, rtol=1e-12)
        np.testing.assert_allclose(float(out.metrics["kto_z"]), 0.625, rtol=1e-12)
        np.testing.assert_allclose(float(out.metrics["kto_desirable"]), 0.5)
        # aux["label_b"] overrides the reward threshold: all undesirable
        out, _ = t.apply(_batch(MASK2, LOGP2, REF2, REWARD2, aux={"label_b": jnp.zeros(4, bool)}), t.init())
        np.testing.assert_allclose(float(out.metrics["kto_desirable"]), 0.0)


ALL_CONFIGS = [("sigmoid", 0.0), ("sigmoid", 0.1), ("robust", 0.1), ("hinge", 0.0), ("ipo", 0.0), ("simpo", 0.0), ("orpo", 0.0), ("kto", 0.0)]


@pytest.mark.parametrize("loss_type, eps", ALL_CONFIGS)
def test_gradient_sign_and_jit(loss_type, eps):
    """Descent raises the chosen (desirable) rows' log-probs and lowers the rejected ones';
    padding gets no gradient; jit gives the same loss and gradient."""
    t = objectives.preference_loss(beta=B, loss_type=loss_type, label_smoothing=eps)
    batch = _batch(MASK2, LOGP2, REF2, REWARD2, dtype=jnp.float32)
    f = jax.value_and_grad(lambda lp: _loss(t, batch.replace(logp_bt=lp), LOSS_NAME[loss_type])
                           + (_loss(t, batch.replace(logp_bt=lp), "nll") if loss_type == "orpo" else 0.0))
    loss, g = f(batch.logp_bt)
    loss_j, g_j = jax.jit(f)(batch.logp_bt)
    np.testing.assert_allclose(loss_j, loss, rtol=1e-6)
    np.testing.assert_allclose(g_j, g, rtol=1e-5, atol=1e-8)
    g = np.asarray(g)
    mask = np.asarray(MASK2, bool)
    chosen = np.array([True, False, False, True])
    assert np.all(g[chosen][mask[chosen]] < 0), g
    assert np.all(g[~chosen][mask[~chosen]] > 0), g
    assert np.all(g[~mask] == 0)


def test_validation():
    with pytest.raises(ValueError, match="loss_type"):
        objectives.preference_loss(loss_type="dpo")
    for eps in (0.5, -0.1, 0.7):
        with pytest.raises(ValueError, match="label_smoothing"):
            objectives.preference_loss(label_smoothing=eps)
    for beta in (0.0, -1.0):
        with pytest.raises(ValueError, match="beta"):
            objectives.preference_loss(beta=beta)
    with pytest.raises(ValueError, match="loss_type"):
        algorithms.dpo(loss_type="simpo")  # reference-free losses are their own nouns
    with pytest.raises(ValueError, match="beta"):
        algorithms.simpo(beta=0.0)


def test_nouns_declare_needs():
    for lt in ("sigmoid", "robust", "hinge", "ipo"):
        assert algorithms.dpo(loss_type=lt, label_smoothing=0.1).needs == {"ref_logp"}
    assert algorithms.simpo().needs == frozenset()
    assert algorithms.orpo().needs == frozenset()
    assert algorithms.kto().needs == {"ref_logp"}


# ----------------------------------------------------------------------------- bandit


def _bandit_pairs(counts):
    """One-token pairs over 3 answers: counts[(i, j)] copies of "i preferred over j"."""
    answers, rewards = [], []
    for (i, j), c in counts.items():
        answers += [i, j] * c
        rewards += [1.0, 0.0] * c
    return np.array(answers), np.array(rewards)


def _train_bandit(t, answers, rewards, ref_logits, steps=600, lr=0.05, aux=None):
    n = len(answers)
    base = _batch(np.ones((n, 1)), np.zeros((n, 1)), np.zeros((n, 1)), rewards, dtype=ref_logits.dtype, aux=aux or {})
    ref_lp = jax.nn.log_softmax(ref_logits)[answers][:, None]

    def loss(theta):
        lp = jax.nn.log_softmax(theta)[answers][:, None]
        out, _ = t.apply(base.replace(logp_bt=lp, ref_logp_bt=ref_lp), t.init())
        return sum(out.losses.values())

    opt = optax.adam(lr)

    @jax.jit
    def run(theta):
        def step(carry, _):
            theta, s = carry
            g = jax.grad(loss)(theta)
            u, s = opt.update(g, s)
            return (optax.apply_updates(theta, u), s), None

        (theta, _), _ = jax.lax.scan(step, (theta, opt.init(theta)), None, length=steps)
        return theta

    return jax.nn.softmax(run(ref_logits))


REF_LOGITS = np.log(np.array([0.2, 0.5, 0.3]))


def test_dpo_bandit_matches_closed_form():
    """Bradley–Terry data with r = [log 3, 0, −log 3]: P(0≻1) = P(1≻2) = 3/4, P(0≻2) = 9/10,
    realised EXACTLY by pair counts 3:1, 3:1, 9:1. Each pair type's DPO loss is then the BT
    cross-entropy, minimised at β(h_ij) = r_i − r_j, and these targets are consistent, so the
    empirical loss's minimiser is π* ∝ π_ref·exp(r/β) (unique: the loss is strictly convex in the
    two logit differences). Only optimisation error remains: in float64, 600 Adam steps
    (lr 0.05) land within ~1e-13 of π*; longer runs jitter at ~1e-7 (Adam's step never shrinks
    to 0), so 1e-5 on probabilities is tight yet safe."""
    beta = 0.5
    counts = {(0, 1): 3, (1, 0): 1, (1, 2): 3, (2, 1): 1, (0, 2): 9, (2, 0): 1}
    answers, rewards = _bandit_pairs(counts)
    with jax.enable_x64(True):
        pi = _train_bandit(objectives.preference_loss(beta=beta), answers, rewards, jnp.asarray(REF_LOGITS), steps=600)
        r = np.array([math.log(3), 0.0, -math.log(3)])
        target = np.exp(REF_LOGITS + r / beta)
        target /= target.sum()
        np.testing.assert_allclose(np.asarray(pi), target, atol=1e-5)


@pytest.mark.parametrize("loss_type, eps", ALL_CONFIGS)
def test_pair_methods_recover_preferred_answer(loss_type, eps):
    """Answer 0 beats both others, 1 beats 2 (deterministic labels), with the reference
    preferring answer 1: every loss ends with π(0) the largest and above π_ref(0). IPO's optimum
    keeps a finite log-ratio margin 1/(2β) per pair, which with β = 0.5 (margin 1) cannot overcome
    the reference's 2.5× preference for answer 1, so IPO runs at β = 0.1 (margin 5)."""
    answers, rewards = _bandit_pairs({(0, 1): 2, (0, 2): 2, (1, 2): 1})
    beta = {"simpo": 2.0, "ipo": 0.1}.get(loss_type, 0.5)
    t = objectives.preference_loss(beta=beta, loss_type=loss_type, label_smoothing=eps)
    pi = np.asarray(_train_bandit(t, answers, rewards, jnp.asarray(REF_LOGITS, jnp.float32), steps=300))
    assert np.argmax(pi) == 0, pi
    assert pi[0] > 0.2 + 0.1, pi


# ----------------------------------------------------------------------------- nouns train


@pytest.mark.parametrize("name", ["simpo", "orpo", "kto"])
def test_new_nouns_train_on_pairs(name):
    from test_algorithms import _init, _pair_batch, _train_fn

    alg = getattr(algorithms, name)(learning_rate=1e-2)
    state = _init(alg)
    state, metrics = _train_fn(alg)(state, _pair_batch())
    metrics = jax.tree.map(np.asarray, metrics)
    assert name in metrics and np.isfinite(metrics[name]) and float(metrics["grad_norm"]) > 0


def test_orpo_finite_at_certain_responses():
    # mean token log-prob 0 (P = 1) or tiny: log(1 − e^ā) stays finite, and so does the gradient
    t = objectives.preference_loss(loss_type="orpo")
    batch = _batch([[1, 1], [1, 1]], [[0.0, 0.0], [-1e-9, -30.0]], dtype=jnp.float32)
    loss, g = jax.value_and_grad(lambda lp: _loss(t, batch.replace(logp_bt=lp), "orpo"))(batch.logp_bt)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(g)))
