"""Tests for the public transforms of polrl.advantages and polrl.objectives.

1. A contract test over EVERY public factory (found by introspecting the two modules, so a new
   transform is covered automatically and fails here until it is added to ``FACTORIES``).
2. Hand-computed values of each transform, written as literals with the arithmetic alongside.
"""
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import advantages, objectives
from polrl.core import Batch, Transform
from compile_events import compilations

# Every public factory, built with valid hyper-parameters. Key: "<module>.<name>".
FACTORIES = {
    "advantages.group_advantage": lambda: advantages.group_advantage(scale="std"),
    "advantages.drop_zero_variance_groups": lambda: advantages.drop_zero_variance_groups(),
    "advantages.gae_advantage": lambda: advantages.gae_advantage(gamma=0.9, lambda_=0.8),
    "advantages.whiten_advantage": lambda: advantages.whiten_advantage(),
    "objectives.clipped_policy_gradient": lambda: objectives.clipped_policy_gradient(
        eps_low=0.2, eps_high=0.28, dual_clip=3.0
    ),
    "objectives.kl_penalty": lambda: objectives.kl_penalty(coef=0.1, estimator="k3"),
    "objectives.entropy_bonus": lambda: objectives.entropy_bonus(coef=0.01),
    "objectives.value_loss": lambda: objectives.value_loss(coef=0.5, clip=0.2),
    "objectives.nll": lambda: objectives.nll(),
    "objectives.preference_loss": lambda: objectives.preference_loss(beta=0.1),
    "objectives.aggregate": lambda: objectives.aggregate("seq_mean_token_mean"),
}
# Public functions of those modules that are helpers, not Transform factories.
HELPERS = {"objectives.old_logp"}


def _public_functions():
    out = []
    for module in (advantages, objectives):
        short = module.__name__.rsplit(".", 1)[1]
        for name, obj in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(obj):
                continue
            if obj.__module__ != module.__name__:  # re-exports (e.g. stateless) are not ours
                continue
            out.append(f"{short}.{name}")
    return sorted(out)


PUBLIC = _public_functions()
PUBLIC_FACTORIES = [n for n in PUBLIC if n not in HELPERS]


def test_every_public_factory_is_in_the_table():
    missing = sorted(set(PUBLIC_FACTORIES) - set(FACTORIES))
    assert not missing, f"public transform factories without a contract-test entry: {missing}"
    stale = sorted((set(FACTORIES) | HELPERS) - set(PUBLIC))
    assert not stale, f"table entries that are no longer public functions: {stale}"
    assert len(PUBLIC_FACTORIES) >= 11


def test_factories_declare_transform_return():
    # helpers must not secretly be factories, and factories are annotated as such
    for name in PUBLIC:
        module = advantages if name.startswith("advantages.") else objectives
        fn = getattr(module, name.split(".", 1)[1])
        returns_transform = inspect.signature(fn).return_annotation in ("Transform", Transform)
        assert returns_transform == (name not in HELPERS), name


# ----------------------------------------------------------------------------- contract

B, T, P = 4, 3, 2


def _full_batch(seed: int) -> Batch:
    """A batch with every field a transform might read; pairs/groups [0, 0, 1, 1]."""
    ks = jax.random.split(jax.random.key(seed), 10)
    n = lambda k, scale=1.0: scale * jax.random.normal(k, (B, T), jnp.float32)
    logp = -jnp.abs(n(ks[0]))
    return Batch(
        prompt_bp=jax.random.randint(ks[1], (B, P), 0, 8, jnp.int32),
        prompt_valid_bp=jnp.array([[True, True], [False, True], [True, True], [True, True]]),
        response_bt=jax.random.randint(ks[2], (B, T), 0, 8, jnp.int32),
        mask_bt=jnp.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], jnp.float32),
        reward_b=jnp.array([1.0, 0.0, 2.0, 2.0]) + seed,  # group 1 is flat
        group_b=jnp.array([0, 0, 1, 1], jnp.int32),
        behavior_logp_bt=logp + 0.01,
        old_value_bt=n(ks[3], 0.5),
        old_logp_bt=logp + n(ks[4], 0.1),
        ref_logp_bt=logp + n(ks[5], 0.1),
        adv_bt=n(ks[6]),
        return_bt=n(ks[7]),
        logp_bt=logp,
        entropy_bt=jnp.abs(n(ks[8])),
        value_bt=n(ks[9], 0.5),
        terms={"pre": jnp.ones((B, T)) * (seed + 1.0)},
        losses={"existing": jnp.float32(0.5)},
        metrics={"m": jnp.float32(seed)},
    )


def _assert_trees_close(a, b, **kw):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


@pytest.mark.parametrize("name", PUBLIC_FACTORIES)
def test_transform_contract(name):
    if name not in FACTORIES:
        pytest.fail(f"{name} is a public factory but has no entry in FACTORIES")
    t = FACTORIES[name]()
    assert isinstance(t, Transform)
    state0 = t.init()
    batch = _full_batch(0)

    apply = jax.jit(lambda b, s, step, rng: t.apply(b, s, step=step, rng=rng))
    extras = dict(step=jnp.int32(3), rng=jax.random.key(1))
    out, state1 = apply(batch, state0, **extras)
    assert isinstance(out, Batch)
    assert jax.tree.structure(state1) == jax.tree.structure(state0)
    # it did something: the output differs from the input
    changed = jax.tree.structure(out) != jax.tree.structure(batch) or any(
        not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(out), jax.tree.leaves(batch))
    )
    assert changed, f"{name} left the batch unchanged"

    # same shapes, other values, threaded state: no recompilation
    batch1, step1, rng1 = _full_batch(1), jnp.int32(4), jax.random.key(2)
    with compilations() as compiled:
        out2, state2 = jax.block_until_ready(apply(batch1, state1, step=step1, rng=rng1))
    assert compiled == []
    assert jax.tree.structure(state2) == jax.tree.structure(state0)

    # jit == no-jit
    eager, eager_state = t.apply(batch, state0, **extras)
    _assert_trees_close(out, eager, rtol=1e-5, atol=1e-6)
    _assert_trees_close(state1, eager_state, rtol=1e-5, atol=1e-6)

    # unknown extras are ignored (and no extra is required)
    with_unknown, _ = t.apply(batch, state0, **extras, foo=object(), temperature=0.3, epoch=None)
    _assert_trees_close(with_unknown, eager, rtol=0, atol=0)
    no_extras, _ = t.apply(batch, state0)
    _assert_trees_close(no_extras, eager, rtol=0, atol=0)


def test_transforms_name_missing_fields():
    # every transform that reads a field errors with its own name when it is None
    bare = Batch(
        prompt_bp=jnp.zeros((B, P), jnp.int32),
        prompt_valid_bp=jnp.ones((B, P), bool),
        response_bt=jnp.zeros((B, T), jnp.int32),
        mask_bt=jnp.ones((B, T)),
    )
    for name, build in FACTORIES.items():
        if name == "objectives.aggregate":
            continue  # reads only terms and mask
        with pytest.raises(ValueError, match=name.split(".")[1]):
            build().apply(bare, build().init())


# ----------------------------------------------------------------------------- hand values


def _batch(mask, **fields):
    mask = jnp.asarray(mask, jnp.float32)
    b, t = mask.shape
    return Batch(
        prompt_bp=jnp.zeros((b, 1), jnp.int32),
        prompt_valid_bp=jnp.ones((b, 1), bool),
        response_bt=jnp.zeros((b, t), jnp.int32),
        mask_bt=mask,
        **{k: (jnp.asarray(v, jnp.int32) if k == "group_b" else jnp.asarray(v, jnp.float32))
           for k, v in fields.items()},
    )


def _apply(t, batch, **extra):
    out, _ = t.apply(batch, t.init(), **extra)
    return out


# groups: 0 = rows 0–2 (rewards 1, 0, 2), 1 = rows 3–4 (flat 3, 3), 2 = row 5 (singleton 5)
GROUP_REWARD_B = [1.0, 0.0, 2.0, 3.0, 3.0, 5.0]
GROUP_B = [0, 0, 0, 1, 1, 2]
GROUP_MASK = [[1, 1], [1, 0], [1, 1], [1, 1], [1, 0], [1, 1]]


def test_group_advantage_std():
    out = _apply(advantages.group_advantage(), _batch(GROUP_MASK, reward_b=GROUP_REWARD_B, group_b=GROUP_B))
    # group 0: mean 1, deviations [0, −1, 1], unbiased var (0+1+1)/2 = 1 → std 1:
    #   A = [0, −1, 1] / (1 + 1e-6);  flat group and singleton → exactly 0
    a = 1.0 / (1.0 + 1e-6)
    expected_b = np.array([0.0, -a, a, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(out.adv_bt, expected_b[:, None] * np.array(GROUP_MASK), rtol=1e-6)
    assert np.all(np.asarray(out.adv_bt)[np.array(GROUP_MASK) == 0] == 0)  # padding stays 0
    # ddof = 0: var 2/3 → std 0.8164966; A = ±1 / 0.8164976
    out0 = _apply(advantages.group_advantage(ddof=0), _batch(GROUP_MASK, reward_b=GROUP_REWARD_B, group_b=GROUP_B))
    np.testing.assert_allclose(out0.adv_bt[2, 0], 1.0 / (math.sqrt(2 / 3) + 1e-6), rtol=1e-6)


def test_group_advantage_none():
    out = _apply(
        advantages.group_advantage(scale="none"),
        _batch(GROUP_MASK, reward_b=GROUP_REWARD_B, group_b=GROUP_B),
    )
    # r − mean_g: group 0 [1−1, 0−1, 2−1] = [0, −1, 1]; others 0
    expected_b = np.array([0.0, -1.0, 1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(out.adv_bt, expected_b[:, None] * np.array(GROUP_MASK), atol=1e-7)
    with pytest.raises(ValueError, match="scale"):
        _apply(advantages.group_advantage(scale="max"), _batch(GROUP_MASK, reward_b=GROUP_REWARD_B, group_b=GROUP_B))


def test_drop_zero_variance_groups():
    out = _apply(
        advantages.drop_zero_variance_groups(),
        _batch(GROUP_MASK, reward_b=GROUP_REWARD_B, group_b=GROUP_B),
    )
    # group 0 varies → kept; flat group 1 (rows 3, 4) and singleton 2 (row 5) → masked
    keep = np.array([1, 1, 1, 0, 0, 0], np.float32)
    np.testing.assert_array_equal(out.mask_bt, np.array(GROUP_MASK) * keep[:, None])
    # 3 of 6 rows removed
    np.testing.assert_allclose(out.metrics["zero_variance_frac"], 0.5)
    # nothing dropped when every group varies
    out = _apply(
        advantages.drop_zero_variance_groups(),
        _batch([[1], [1], [1], [1]], reward_b=[0, 1, 2, 3], group_b=[0, 0, 1, 1]),
    )
    np.testing.assert_allclose(out.metrics["zero_variance_frac"], 0.0)
    np.testing.assert_array_equal(out.mask_bt, np.ones((4, 1)))


GAE_MASK = [[1, 1, 1], [1, 1, 0]]
GAE_REWARD_B = [1.0, 2.0]
GAE_VALUE_BT = [[0.5, 0.2, 0.1], [0.3, 0.4, 9.9]]  # 9.9 sits on padding


def test_gae_advantage_lambda_one_gives_return_minus_value():
    out = _apply(
        advantages.gae_advantage(gamma=1.0, lambda_=1.0),
        _batch(GAE_MASK, reward_b=GAE_REWARD_B, old_value_bt=GAE_VALUE_BT),
    )
    # γ = λ = 1, reward paid at the last valid token: A_t = R − V_t, G_t = R
    #   row 0: 1 − [0.5, 0.2, 0.1] = [0.5, 0.8, 0.9];  row 1: 2 − [0.3, 0.4] = [1.7, 1.6], pad 0
    np.testing.assert_allclose(out.adv_bt, [[0.5, 0.8, 0.9], [1.7, 1.6, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(out.return_bt, [[1.0, 1.0, 1.0], [2.0, 2.0, 0.0]], rtol=1e-6)


def test_gae_advantage_discounted():
    out = _apply(
        advantages.gae_advantage(gamma=0.5, lambda_=0.5),
        _batch(GAE_MASK, reward_b=GAE_REWARD_B, old_value_bt=GAE_VALUE_BT),
    )
    # row 1 (2 valid tokens, r = [0, 2], V = [0.3, 0.4], V after the end = 0):
    #   δ_1 = 2 + 0 − 0.4 = 1.6;   δ_0 = 0 + 0.5·0.4 − 0.3 = −0.1
    #   A_1 = 1.6;                 A_0 = −0.1 + 0.25·1.6 = 0.3;   G = A + V = [0.6, 2.0]
    # row 0 (r = [0, 0, 1], V = [0.5, 0.2, 0.1]):
    #   δ_2 = 1 − 0.1 = 0.9;  δ_1 = 0.5·0.1 − 0.2 = −0.15;  δ_0 = 0.5·0.2 − 0.5 = −0.4
    #   A_2 = 0.9;  A_1 = −0.15 + 0.25·0.9 = 0.075;  A_0 = −0.4 + 0.25·0.075 = −0.38125
    np.testing.assert_allclose(
        out.adv_bt, [[-0.38125, 0.075, 0.9], [0.3, 1.6, 0.0]], rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        out.return_bt, [[0.11875, 0.275, 1.0], [0.6, 2.0, 0.0]], rtol=1e-5, atol=1e-7
    )


def test_whiten_advantage():
    mask = [[1, 1, 1], [1, 0, 0]]
    adv = [[1.0, 2.0, 3.0], [4.0, 100.0, -100.0]]  # ±100 on padding
    out = _apply(advantages.whiten_advantage(), _batch(mask, adv_bt=adv))
    # valid values 1, 2, 3, 4: mean 2.5, unbiased var (2.25+0.25+0.25+2.25)/3 = 5/3,
    # std 1.2909944 → (x − 2.5)/1.2909944 = [−1.161895, −0.387298, 0.387298, 1.161895]
    np.testing.assert_allclose(
        out.adv_bt, [[-1.161895, -0.387298, 0.387298], [1.161895, 0.0, 0.0]], rtol=1e-5
    )
    # shift_mean=False: rescale, then add the mean back: + 2.5 on valid tokens
    out = _apply(advantages.whiten_advantage(shift_mean=False), _batch(mask, adv_bt=adv))
    np.testing.assert_allclose(
        out.adv_bt, [[1.338105, 2.112702, 2.887298], [3.661895, 0.0, 0.0]], rtol=1e-5
    )


# clipped policy gradient: log ratios [[+0.5, −0.5, +5], [−0.5, +0.5, +5]], A = [[1, 1, 1], [−1, −1, −1]];
# the third column is padding with a huge ratio e⁵ that must not reach the metrics.
PG_OLD = [[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]]
PG_LOGP = [[-0.5, -1.5, 4.0], [-1.5, -0.5, 4.0]]
PG_ADV = [[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]
PG_MASK = [[1, 1, 0], [1, 1, 0]]


def test_clipped_policy_gradient_with_old_logp():
    batch = _batch(PG_MASK, logp_bt=PG_LOGP, old_logp_bt=PG_OLD, adv_bt=PG_ADV)
    out = _apply(objectives.clipped_policy_gradient(eps_low=0.2), batch)
    # ρ = e^{±0.5} = 1.648721 / 0.606531; L = max(−Aρ, −A clip(ρ, 0.8, 1.2)):
    #   A=+1, ρ=1.6487: max(−1.6487, −1.2) = −1.2        (clipped)
    #   A=+1, ρ=0.6065: max(−0.6065, −0.8) = −0.606531   (not clipped)
    #   A=−1, ρ=0.6065: max(0.6065, 0.8)   = 0.8         (clipped)
    #   A=−1, ρ=1.6487: max(1.6487, 1.2)   = 1.648721    (not clipped)
    pg = np.asarray(out.terms["pg"])
    np.testing.assert_allclose(pg[:, :2], [[-1.2, -0.606531], [0.8, 1.648721]], rtol=1e-5)
    assert set(out.terms) == {"pg"} and out.losses == {}  # a term waiting for aggregation
    np.testing.assert_allclose(out.metrics["clip_frac"], 0.5)  # 2 of 4 valid tokens
    # ratio mean (2·1.648721 + 2·0.606531)/4 = 1.127626; max 1.648721 (padding's e⁵ ignored)
    np.testing.assert_allclose(out.metrics["ratio_mean"], 1.127626, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["ratio_max"], 1.648721, rtol=1e-5)
    # clip-higher: ε_high = 0.7 lets ρ = 1.6487 through for A = +1: −1.648721, no longer clipped
    out = _apply(objectives.clipped_policy_gradient(eps_low=0.2, eps_high=0.7), batch)
    np.testing.assert_allclose(out.terms["pg"][0, 0], -1.648721, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["clip_frac"], 0.25)


def test_clipped_policy_gradient_without_old_logp_is_reinforce():
    batch = _batch(PG_MASK, logp_bt=PG_LOGP, adv_bt=PG_ADV)  # old_logp_bt None → ρ = 1
    t = objectives.clipped_policy_gradient(eps_low=0.2)
    out = _apply(t, batch)
    # ρ = 1 everywhere: L = −A
    np.testing.assert_allclose(out.terms["pg"], -np.asarray(PG_ADV), rtol=1e-6)
    np.testing.assert_allclose(out.metrics["clip_frac"], 0.0)
    np.testing.assert_allclose(out.metrics["ratio_mean"], 1.0)
    np.testing.assert_allclose(out.metrics["ratio_max"], 1.0)
    # gradient wrt log π is −A (REINFORCE), through ρ = exp(logp − sg(logp))
    grad = jax.grad(lambda lp: _apply(t, batch.replace(logp_bt=lp)).terms["pg"].sum())(batch.logp_bt)
    np.testing.assert_allclose(grad, -np.asarray(PG_ADV), rtol=1e-6)


def test_clipped_policy_gradient_dual_clip():
    batch = _batch(PG_MASK, logp_bt=PG_LOGP, old_logp_bt=PG_OLD, adv_bt=PG_ADV)
    out = _apply(objectives.clipped_policy_gradient(eps_low=0.2, dual_clip=1.5), batch)
    # only A < 0 with a loss above −c·A = 1.5 changes: min(1.648721, 1.5) = 1.5
    np.testing.assert_allclose(
        np.asarray(out.terms["pg"])[:, :2], [[-1.2, -0.606531], [0.8, 1.5]], rtol=1e-5
    )
    # with c = 3 nothing reaches the bound: same as without dual clip
    out3 = _apply(objectives.clipped_policy_gradient(eps_low=0.2, dual_clip=3.0), batch)
    np.testing.assert_allclose(
        np.asarray(out3.terms["pg"])[:, :2], [[-1.2, -0.606531], [0.8, 1.648721]], rtol=1e-5
    )


# KL: log π = [−1, −2, −1, (pad) 0], log π_ref = [−2, −1, −1, (pad) −30]; d = ref − π = [−1, 1, 0]
KL_LOGP = [[-1.0, -2.0, -1.0, 0.0]]
KL_REF = [[-2.0, -1.0, -1.0, -30.0]]
KL_MASK = [[1, 1, 1, 0]]


@pytest.mark.parametrize(
    "estimator, expected_t, mean",
    [
        # k1 = log π − log π_ref = [1, −1, 0]; mean 0
        ("k1", [1.0, -1.0, 0.0], 0.0),
        # k2 = ½(log π − log π_ref)² = [0.5, 0.5, 0]; mean 1/3
        ("k2", [0.5, 0.5, 0.0], 1.0 / 3.0),
        # k3 = eᵈ − d − 1 = [e⁻¹ + 1 − 1, e − 1 − 1, 0] = [0.367879, 0.718282, 0]; mean 0.362054
        ("k3", [0.367879, 0.718282, 0.0], 0.362054),
    ],
)
def test_kl_penalty(estimator, expected_t, mean):
    batch = _batch(KL_MASK, logp_bt=KL_LOGP, ref_logp_bt=KL_REF)
    t = objectives.kl_penalty(coef=0.1, estimator=estimator)
    assert t.needs == {"ref_logp"}
    out = _apply(t, batch)
    np.testing.assert_allclose(np.asarray(out.terms["kl"])[0, :3], 0.1 * np.array(expected_t), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.metrics["kl"], mean, rtol=1e-5, atol=1e-7)  # padding excluded
    # coef = 0: the metric is still logged, no term is added
    out0 = _apply(objectives.kl_penalty(coef=0.0, estimator=estimator), batch)
    assert out0.terms == {} and out0.losses == {}
    np.testing.assert_allclose(out0.metrics["kl"], mean, rtol=1e-5, atol=1e-7)


def test_kl_penalty_rejects_unknown_estimator():
    with pytest.raises(ValueError, match="k4"):
        objectives.kl_penalty(coef=0.1, estimator="k4")


def test_entropy_bonus():
    out = _apply(objectives.entropy_bonus(coef=0.01), _batch([[1, 1, 0]], entropy_bt=[[1.0, 2.0, 3.0]]))
    # −c·H = −0.01·[1, 2, 3]
    np.testing.assert_allclose(out.terms["entropy"], [[-0.01, -0.02, -0.03]], rtol=1e-6)


# value loss, coef 0.5 → per token 0.25·err:
#   token 0: V=1, V_old=0.5, G=0: unclipped (1−0)² = 1;   clipped V_old+0.2 = 0.7 → 0.49;  max 1    (unclipped wins)
#   token 1: V=1, V_old=0,   G=1: unclipped 0;            clipped 0+0.2 = 0.2 → 0.64;      max 0.64 (clipped wins)
#   token 2: V=0.6, V_old=0.5, G=1: inside the clip, both (0.6−1)² = 0.16
VALUE = dict(value_bt=[[1.0, 1.0, 0.6]], old_value_bt=[[0.5, 0.0, 0.5]], return_bt=[[0.0, 1.0, 1.0]])


def test_value_loss_clipped():
    t = objectives.value_loss(coef=0.5, clip=0.2)
    assert t.needs == {"values"}
    out = _apply(t, _batch([[1, 1, 1]], **VALUE))
    np.testing.assert_allclose(out.terms["value"], [[0.25, 0.16, 0.04]], rtol=1e-5)
    # value_error = mean squared error used = (1 + 0.64 + 0.16)/3 = 0.6
    np.testing.assert_allclose(out.metrics["value_error"], 0.6, rtol=1e-5)


def test_value_loss_unclipped():
    out = _apply(objectives.value_loss(coef=0.5, clip=None), _batch([[1, 1, 1]], **VALUE))
    # plain 0.25·(V − G)² = 0.25·[1, 0, 0.16]
    np.testing.assert_allclose(out.terms["value"], [[0.25, 0.0, 0.04]], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.metrics["value_error"], (1 + 0 + 0.16) / 3, rtol=1e-5)


def test_nll():
    out = _apply(objectives.nll(), _batch([[1, 1, 0]], logp_bt=[[-0.5, -2.0, -9.0]]))
    np.testing.assert_allclose(out.terms["nll"], [[0.5, 2.0, 9.0]])


# Preference pairs: rows (0, 1) = pair 0, rows (2, 3) = pair 1 (a tie). With log π_ref = −1 and
# log π − log π_ref per token: row 0 [1.0, 0.5] → s = 1.5;  row 1 [−0.5, (pad) 7] → s = −0.5;
# the tie's values are large so that counting it would show.
PREF_MASK = [[1, 1], [1, 0], [1, 1], [1, 1]]
PREF_DIFF = np.array([[1.0, 0.5], [-0.5, 7.0], [30.0, 30.0], [-30.0, -30.0]])
PREF = dict(
    logp_bt=PREF_DIFF - 1.0,
    ref_logp_bt=-np.ones((4, 2)),
    group_b=[0, 0, 1, 1],
)


def test_preference_loss_sigmoid():
    batch = _batch(PREF_MASK, reward_b=[1.0, 0.0, 0.5, 0.5], **PREF)
    t = objectives.preference_loss(beta=0.1)
    assert t.needs == {"ref_logp"}
    out = _apply(t, batch)
    # h = s(y_w) − s(y_l) = 1.5 − (−0.5) = 2;  L = −log σ(0.1·2) = log(1 + e^{−0.2}) = 0.598139
    assert out.terms == {} and set(out.losses) == {"dpo"}  # a scalar loss, no term
    np.testing.assert_allclose(out.losses["dpo"], 0.598139, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["pref_accuracy"], 1.0)
    np.testing.assert_allclose(out.metrics["pref_margin"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["pref_pairs"], 1.0)  # the tie is ignored
    # swap the preference: h = −2, L = −log σ(−0.2) = 0.798139, accuracy 0
    out = _apply(t, batch.replace(reward_b=jnp.array([0.0, 1.0, 0.5, 0.5])))
    np.testing.assert_allclose(out.losses["dpo"], 0.798139, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["pref_accuracy"], 0.0)
    np.testing.assert_allclose(out.metrics["pref_margin"], -2.0, rtol=1e-6)


def test_preference_loss_gradient_only_through_valid_pairs():
    batch = _batch(PREF_MASK, reward_b=[1.0, 0.0, 0.5, 0.5], **PREF)
    t = objectives.preference_loss(beta=0.1)
    grad = jax.grad(lambda lp: _apply(t, batch.replace(logp_bt=lp)).losses["dpo"])(batch.logp_bt)
    # dL/dh = −β σ(−βh) = −0.1·σ(−0.2) = −0.0450166; ∂h/∂logp = +1 on y_w, −1 on y_l (valid tokens)
    g = 0.1 / (1 + math.exp(0.2))
    np.testing.assert_allclose(grad, [[-g, -g], [g, 0.0], [0, 0], [0, 0]], rtol=1e-5, atol=1e-8)


def test_preference_loss_all_ties():
    batch = _batch(PREF_MASK, reward_b=[1.0, 1.0, 0.5, 0.5], **PREF)
    out = _apply(objectives.preference_loss(beta=0.1), batch)
    np.testing.assert_allclose(out.losses["dpo"], 0.0)
    np.testing.assert_allclose(out.metrics["pref_pairs"], 0.0)


def test_preference_loss_label_smoothing():
    batch = _batch(PREF_MASK, reward_b=[1.0, 0.0, 0.5, 0.5], **PREF)
    out = _apply(objectives.preference_loss(beta=0.1, label_smoothing=0.1), batch)
    # 0.9·(−log σ(0.2)) + 0.1·(−log σ(−0.2)) = 0.9·0.598139 + 0.1·0.798139 = 0.618139
    np.testing.assert_allclose(out.losses["dpo"], 0.618139, rtol=1e-5)


def test_preference_loss_ipo():
    batch = _batch(PREF_MASK, reward_b=[1.0, 0.0, 0.5, 0.5], **PREF)
    out = _apply(objectives.preference_loss(beta=0.1, loss_type="ipo"), batch)
    # length-normalised: s(y_w) = 1.5/2 = 0.75, s(y_l) = −0.5/1 = −0.5 → h = 1.25
    # L = (h − 1/(2β))² = (1.25 − 5)² = 14.0625
    np.testing.assert_allclose(out.losses["dpo"], 14.0625, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["pref_margin"], 1.25, rtol=1e-5)
    with pytest.raises(ValueError, match="loss_type"):
        objectives.preference_loss(loss_type="bogus")


AGG_MASK = [[1, 1], [1, 0]]
AGG_TERM = [[1.0, 2.0], [3.0, 50.0]]  # 50 on padding


@pytest.mark.parametrize(
    "mode, max_len, expected",
    [
        ("token_mean", None, 2.0),  # (1 + 2 + 3)/3
        ("seq_mean_token_mean", None, 2.25),  # (1.5 + 3)/2
        ("seq_mean_token_sum", None, 3.0),  # (3 + 3)/2
        ("seq_mean_token_sum_norm", 4, 0.75),  # (3/4 + 3/4)/2
    ],
)
def test_aggregate(mode, max_len, expected):
    batch = _batch(AGG_MASK).add_term("a", jnp.array(AGG_TERM)).add_term("b", 2 * jnp.array(AGG_TERM))
    batch = batch.add_loss("dpo", jnp.float32(0.7))
    out = _apply(objectives.aggregate(mode, max_len=max_len), batch)
    assert out.terms == {}
    assert set(out.losses) == {"a", "b", "dpo"}
    np.testing.assert_allclose(out.losses["a"], expected, rtol=1e-6)
    np.testing.assert_allclose(out.losses["b"], 2 * expected, rtol=1e-6)
    np.testing.assert_allclose(out.losses["dpo"], 0.7)  # existing losses are kept


def test_aggregate_validates_at_construction():
    with pytest.raises(ValueError, match="mode"):
        objectives.aggregate("sum")
    with pytest.raises(ValueError, match="max_len"):
        objectives.aggregate("seq_mean_token_sum_norm")


def test_old_logp_helper():
    lp = jnp.array([[-1.0, -2.0]])
    b = _batch([[1, 1]], logp_bt=lp)
    np.testing.assert_array_equal(objectives.old_logp(b), lp)
    # stop_gradient: no gradient flows through π_old
    g = jax.grad(lambda x: objectives.old_logp(b.replace(logp_bt=x)).sum())(lp)
    np.testing.assert_array_equal(g, np.zeros((1, 2)))
    b = b.replace(old_logp_bt=jnp.array([[-3.0, -4.0]]))
    np.testing.assert_array_equal(objectives.old_logp(b), [[-3.0, -4.0]])
