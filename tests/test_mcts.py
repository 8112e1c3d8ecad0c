"""MCTS over reasoning steps (polrl.search.mcts) and MCTS-DPO's step-level pairs
(polrl.collectors.mcts_pairs, arXiv 2405.00451).

On a float64 tiny model (7 tokens; steps of one or two tokens; depth 1–3): the compiled search
equals a plain-Python MCTS that draws every token with the same uniforms from a full forward
(tree, visit counts, W, priors); with many simulations at depth 1 each root child's Q matches the
exact expected reward of its step (every continuation enumerated with its probability) and the
best child is the exact argmax; pair extraction on a hand-built tree; the DPO log-ratio of a
step-level pair equals the one of the two steps alone; jit == no-jit; the collector's rows are
the search's pairs. The smoke experiment runs in tests/test_experiments.py (-k mcts_dpo).
"""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import collectors, objectives, sharding
from polrl.collectors.mcts_pairs import VALID, pair_rows, step_pairs
from polrl.core import Batch
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.rollout.sampling import draw
from polrl.search.mcts import Tree, mcts, prm_prefix_score
from polrl.search.scoring import prefix_scores
from polrl.tasks import Task
from polrl.train import steps
from tiny_models import tiny_params

V, EOS, SEP, GOOD = 7, 6, 5, 4
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=24,
                        max_len=16, dtype=jnp.float64, param_dtype=jnp.float64)
PROMPTS = [[1, 5, 6], [1, 4]]


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def parts(seed=0):
    with jax.enable_x64(True):
        return tiny_params(CFG, seed=seed)


def outcome(response, mask):
    """A graded verifier: a third per GOOD token, +0.5 for a response that ends with EOS."""
    return ((response == GOOD) * mask).sum(-1) / 3 + 0.5 * (((response == EOS) * mask).sum(-1) > 0)


def left_padded(prompts, width=4):
    tokens = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = p
    return jnp.asarray(tokens), jnp.asarray(tokens != 0)


@functools.partial(jax.jit, static_argnames=("config", "simulations", "branching", "max_depth", "step_tokens",
                                             "c_puct"))
def search(params, tokens, valid, rng, config, **options):
    return mcts(nnx.merge(parts()[0], params), tokens, valid, rng, config, outcome=outcome, separator_id=SEP,
                **options)


@jax.jit
def next_logits(seq, length):
    """The next-token logits after the first ``length`` tokens of ``seq``, from a full forward."""
    graphdef, params = parts()
    valid = jnp.arange(seq.shape[0]) < length
    logits = nnx.merge(graphdef, params)(seq[None], jnp.arange(seq.shape[0])[None], valid[None])
    return logits[0, length - 1]


def next_token(seq, u, config):
    padded = jnp.asarray(seq + [0] * (CFG.max_len - len(seq)), jnp.int32)
    token, logp = draw(next_logits(padded, len(seq))[None], jnp.asarray([u]), config)
    return int(token[0]), float(logp[0])


def score(tokens, n):
    row = np.asarray(tokens + [0] * (n - len(tokens)))
    return float(outcome(row, (np.arange(n) < len(tokens)).astype(np.float64)))


def reference_mcts(prompt, b, rng, config, *, batch, simulations, branching, max_depth, step_tokens, c_puct,
                   length_penalty=1.25):
    """Plain-Python MCTS of prompt ``b`` (module docstring of polrl.search.mcts), one node a dict."""
    n, k = config.max_new_tokens, branching
    nodes = [dict(tokens=[], parent=-1, depth=0, child=-1, prior=1.0, terminal=False, value=0.0, N=0, W=0.0)]
    q = lambda c: c["W"] / max(c["N"], 1)

    def rollout(tokens, u):
        tokens = list(tokens)
        for t in range(n - len(tokens)):
            tokens.append(next_token(prompt + tokens, u[t], config)[0])
            if tokens[-1] == EOS:
                break
        return score(tokens, n)

    for i in range(simulations):
        key_step, key_roll = jax.random.split(jax.random.fold_in(rng, i))
        u_step = np.asarray(jax.random.uniform(key_step, (step_tokens, batch * k), dtype=jnp.float64))
        u_roll = np.asarray(jax.random.uniform(key_roll, (n, batch * k), dtype=jnp.float64))
        at = 0
        while nodes[at]["child"] >= 0 and not nodes[at]["terminal"]:
            kids = range(nodes[at]["child"], nodes[at]["child"] + k)
            root_n = np.sqrt(np.float64(nodes[at]["N"]))
            scores = [q(nodes[c]) + c_puct * nodes[c]["prior"] * root_n / (1 + nodes[c]["N"]) for c in kids]
            at = nodes[at]["child"] + int(np.argmax(scores))
        leaf = nodes[at]
        if not leaf["terminal"] and leaf["depth"] < max_depth:
            leaf["child"] = len(nodes)
            values = []
            for j in range(k):
                tokens, logps = list(leaf["tokens"]), []
                for t in range(min(step_tokens, n - len(tokens))):
                    token, logp = next_token(prompt + tokens, u_step[t, b * k + j], config)
                    tokens.append(token)
                    logps.append(logp)
                    if token in (EOS, SEP):
                        break
                terminal = tokens[-1] == EOS or len(tokens) >= n
                v = score(tokens, n) if terminal else rollout(tokens, u_roll[:, b * k + j])
                nodes.append(dict(tokens=tokens, parent=at, depth=leaf["depth"] + 1, child=-1, terminal=terminal,
                                  prior=math.exp(sum(logps) / len(logps) ** length_penalty), value=v, N=1, W=v))
                values.append(v)
        elif leaf["terminal"]:
            values = [leaf["value"]]
        else:
            values = [rollout(leaf["tokens"], u_roll[:, b * k])]
        while at >= 0:
            nodes[at]["N"] += len(values)
            nodes[at]["W"] += sum(values)
            at = nodes[at]["parent"]
    return nodes


SETTINGS = [  # steps of one token, depth 2; steps of up to two tokens split at SEP, depth 3
    dict(n=3, simulations=6, branching=2, max_depth=2, step_tokens=1, c_puct=1.0, seed=0),
    dict(n=5, simulations=5, branching=3, max_depth=3, step_tokens=2, c_puct=0.5, seed=4),
]


@pytest.mark.parametrize("setting", SETTINGS)
def test_search_equals_a_plain_python_mcts_with_the_same_draws(setting):
    setting = dict(setting)
    n, seed = setting.pop("n"), setting.pop("seed")
    config = SamplingConfig(max_new_tokens=n, eos_id=EOS)
    rng = jax.random.key(seed)
    tree = search(parts()[1], *left_padded(PROMPTS), rng, config, **setting)
    re_evaluated = 0
    for b, prompt in enumerate(PROMPTS):
        nodes = reference_mcts(prompt, b, rng, config, batch=len(PROMPTS), **setting)
        used = len(nodes)
        assert int(tree.size_b[b]) == used
        for name, field in [("parent", tree.parent_bm), ("depth", tree.depth_bm), ("child", tree.child_bm),
                            ("N", tree.visits_bm), ("terminal", tree.terminal_bm)]:
            np.testing.assert_array_equal(np.asarray(field[b, :used]), [x[name] for x in nodes], err_msg=name)
        for name, field in [("W", tree.total_bm), ("value", tree.value_bm), ("prior", tree.prior_bm)]:
            np.testing.assert_allclose(np.asarray(field[b, :used]), [x[name] for x in nodes], rtol=0, atol=1e-12)
        for m, x in enumerate(nodes):
            length = len(x["tokens"])
            assert int(tree.length_bm[b, m]) == length
            assert int(tree.start_bm[b, m]) == (len(nodes[x["parent"]]["tokens"]) if m else 0)
            np.testing.assert_array_equal(np.asarray(tree.tokens_bmn[b, m, :length]), x["tokens"])
        assert not np.asarray(tree.visits_bm[b, used:]).any()
        re_evaluated += nodes[0]["N"] - (used - 1)
    assert re_evaluated > 0  # leaves at the depth limit or terminal were evaluated again


def exact_values(prompt, first, config):
    """(mean, variance) of the reward over every response that starts with ``first``, each
    weighted by its probability under the policy (full forwards, nothing sampled)."""
    n = config.max_new_tokens

    def walk(tokens, prob):
        if tokens[-1] == EOS or len(tokens) == n:
            return [(prob, score(tokens, n))]
        padded = jnp.asarray(prompt + tokens + [0] * (CFG.max_len - len(prompt) - len(tokens)), jnp.int32)
        p = np.asarray(jax.nn.softmax(next_logits(padded, len(prompt) + len(tokens))))
        return [leaf for v in range(V) for leaf in walk(tokens + [v], prob * p[v])]

    leaves = walk([first], 1.0)
    probs, rewards = np.array([p for p, _ in leaves]), np.array([r for _, r in leaves])
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-12)
    mean = float(probs @ rewards)
    return mean, float(probs @ (rewards - mean) ** 2)


def test_many_simulations_find_the_exact_best_first_step():
    """Depth 1: every simulation after the root's expansion adds one rollout to a root child, so
    Q(child) is a Monte-Carlo mean of the step's exact expected reward E_π[R | step]; the child
    of highest Q carries the exact argmax over the root's steps, and the most visited one too."""
    config = SamplingConfig(max_new_tokens=3, eos_id=EOS)
    tree = search(parts()[1], *left_padded(PROMPTS), jax.random.key(2), config, simulations=300, branching=4,
                  max_depth=1, step_tokens=1, c_puct=2.0)
    for b, prompt in enumerate(PROMPTS):
        kids = np.arange(1, 5)
        first = np.asarray(tree.tokens_bmn[b, kids, 0])
        exact = {int(t): exact_values(prompt, int(t), config) for t in set(first.tolist())}
        q, visits = np.asarray(tree.q_bm[b, kids]), np.asarray(tree.visits_bm[b, kids])
        for qj, nj, t in zip(q, visits, first):
            mean, var = exact[int(t)]
            assert abs(qj - mean) <= 4 * math.sqrt(var / nj) + 1e-12, (t, qj, mean, nj)
        best = max(exact, key=lambda t: exact[t][0])
        assert sorted(v[0] for v in exact.values())[-1] - sorted(v[0] for v in exact.values())[-2] > 0.1  # a clear best
        assert first[np.argmax(q)] == best and first[np.argmax(visits)] == best
        assert int(tree.visits_bm[b, 0]) == 4 + 299


def test_jit_equals_no_jit():
    config = SamplingConfig(max_new_tokens=2, eos_id=EOS)
    options = dict(simulations=2, branching=2, max_depth=2, step_tokens=1, c_puct=1.0)
    tokens, valid = left_padded(PROMPTS[:1])
    jitted = search(parts()[1], tokens, valid, jax.random.key(5), config, **options)
    with jax.disable_jit():
        eager = mcts(nnx.merge(*parts()), tokens, valid, jax.random.key(5), config, outcome=outcome,
                     separator_id=SEP, **options)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)


def test_prefix_weight_one_values_every_node_by_the_process_reward_model():
    """prefix_weight = 1: each new node's value is the PRM's score of its own partial response
    (``prm_prefix_score`` feeding ``prefix_scores``), the rollout's outcome weighted 0."""
    prm_graphdef, prm_params = tiny_params(dataclasses.replace(CFG, value_head=True), seed=2)
    tokens, valid = left_padded(PROMPTS)
    config = SamplingConfig(max_new_tokens=4, eos_id=EOS)
    run = jax.jit(lambda params: mcts(
        nnx.merge(parts()[0], params), tokens, valid, jax.random.key(0), config, outcome=outcome, separator_id=SEP,
        simulations=3, branching=2, max_depth=2, step_tokens=2, prefix_weight=1.0,
        prefix_score=prm_prefix_score(prm_graphdef, prm_params, tokens, valid)))
    tree = run(parts()[1])
    for b in range(len(PROMPTS)):
        used = int(tree.size_b[b])
        mask = (np.arange(4) < np.asarray(tree.length_bm[b, 1:used])[:, None]).astype(np.float64)
        want = prefix_scores(prm_graphdef, prm_params, jnp.repeat(tokens[b:b + 1], used - 1, 0),
                             jnp.repeat(valid[b:b + 1], used - 1, 0), tree.tokens_bmn[b, 1:used], jnp.asarray(mask))
        np.testing.assert_allclose(np.asarray(tree.value_bm[b, 1:used]), np.asarray(want), rtol=0, atol=1e-12)
        assert len(set(np.round(np.asarray(want), 9))) > 1


# --- pairs ------------------------------------------------------------------------------------

def hand_tree():
    """One prompt, k = 2, 9 nodes (tokens after the prompt; steps of one token, then EOS):

        root ─ 1 [5] Q .9 ─ 3 [5 4] Q .5 ─ 7, 8 (both [5 4 6]: equal steps, gap .3)
             │              4 [5 6] Q .5           (gap 0: no pair)
             └ 2 [6] Q .1 ─ 5 [6 4] Q .2
                            6 [6 6] Q .7           (gap .5: 6 ≻ 5)
    root: gap .8, 1 ≻ 2."""
    n = 4
    tokens = np.zeros((1, 9, n), np.int32)
    steps = {1: [5], 2: [6], 3: [5, 4], 4: [5, 6], 5: [6, 4], 6: [6, 6], 7: [5, 4, 6], 8: [5, 4, 6]}
    for m, t in steps.items():
        tokens[0, m, :len(t)] = t
    length = np.array([[0] + [len(steps[m]) for m in range(1, 9)]])
    q = np.array([[0.4, 0.9, 0.1, 0.5, 0.5, 0.2, 0.7, 0.6, 0.3]])
    visits = np.full((1, 9), 2)
    i32 = lambda x: jnp.asarray(np.asarray(x), jnp.int32)
    return Tree(parent_bm=i32([[-1, 0, 0, 1, 1, 2, 2, 3, 3]]), depth_bm=i32([[0, 1, 1, 2, 2, 2, 2, 3, 3]]),
                child_bm=i32([[1, 3, 5, 7, -1, -1, -1, -1, -1]]), tokens_bmn=i32(tokens),
                logp_bmn=jnp.asarray(-np.arange(1, 37, dtype=np.float64).reshape(1, 9, n) / 10),
                start_bm=i32(np.maximum(length - 1, 0)), length_bm=i32(length), prior_bm=jnp.ones((1, 9)),
                terminal_bm=jnp.zeros((1, 9), bool), value_bm=jnp.asarray(q), visits_bm=i32(visits),
                total_bm=jnp.asarray(q * visits), size_b=i32([9]), sampled=i32(0))


def test_step_pairs_on_a_hand_built_tree():
    tree = hand_tree()
    chosen, rejected, gap, valid, found = (np.asarray(x) for x in step_pairs(tree, 2, 0.0, 3))
    assert found.tolist() == [2]
    np.testing.assert_array_equal(valid, [[True, True, False]])
    np.testing.assert_array_equal(chosen[:, :2], [[1, 6]])
    np.testing.assert_array_equal(rejected[:, :2], [[2, 5]])
    np.testing.assert_allclose(gap[:, :2], [[0.8, 0.5]], atol=1e-12)
    chosen, _, _, valid, found = (np.asarray(x) for x in step_pairs(tree, 2, 0.6, 2))  # the margin drops node 2's pair
    assert found.tolist() == [1] and valid.tolist() == [[True, False]] and chosen[0, 0] == 1
    chosen, _, _, valid, _ = (np.asarray(x) for x in step_pairs(tree, 2, 0.0, 1))  # the cap keeps the largest gap
    assert valid.tolist() == [[True]] and chosen[0, 0] == 1


def test_pair_rows_layout():
    tree = hand_tree()
    chosen, rejected, _, valid, _ = step_pairs(tree, 2, 0.0, 3)
    prompt, prompt_valid = left_padded([[1, 3]])
    rows = pair_rows(tree, prompt, prompt_valid, chosen, rejected, valid, 7)
    assert rows.group_size == 2 and rows.batch_size == 6
    np.testing.assert_array_equal(rows.group_b, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(rows.response_bt[:4], np.asarray(tree.tokens_bmn[0, [1, 2, 6, 5]]))
    np.testing.assert_array_equal(rows.mask_bt, [[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0],
                                                 [0, 0, 0, 0], [0, 0, 0, 0]])  # the step only; an empty slot
    np.testing.assert_allclose(rows.reward_b, [0.9, 0.1, 0.7, 0.2, 0, 0], atol=1e-6)  # the empty slot: a tie
    np.testing.assert_array_equal(rows.aux[VALID], [1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(rows.behavior_logp_bt[2], [0, -2.6, 0, 0], atol=1e-6)  # node 6's step column
    np.testing.assert_array_equal(rows.version_b, 7)
    np.testing.assert_array_equal(rows.prompt_bp, np.repeat(np.asarray(prompt), 6, 0))


def test_dpo_log_ratio_of_a_step_pair_is_that_of_the_two_steps_alone():
    """Rows prefix ++ step with the mask on the step (the collector's) give DPO the h of rows whose
    prompt is x ++ prefix and whose response is the step alone."""
    tree = hand_tree()
    chosen, rejected, _, valid, _ = step_pairs(tree, 2, 0.0, 2)
    prompt, prompt_valid = left_padded([[1, 3]])
    rows = pair_rows(tree, prompt, prompt_valid, chosen, rejected, valid, 0)
    graphdef, params = parts(0)
    ref = parts(1)[1]
    loss = objectives.preference_loss(beta=0.1)
    logp = jax.jit(lambda p, batch: steps.score(graphdef, p, batch)["logp_bt"])

    def margins(batch):
        batch = batch.replace(logp_bt=logp(params, batch), ref_logp_bt=logp(ref, batch))
        s = ((batch.logp_bt - batch.ref_logp_bt) * batch.mask_bt).sum(-1)
        return np.asarray(s[0::2] - s[1::2]), float(loss.apply(batch, ())[0].metrics["pref_margin"])

    h, margin = margins(rows)
    # The same pairs with the shared prefix moved into the prompt and the step as the whole response.
    tokens = np.asarray(tree.tokens_bmn[0])
    alone_prompts, alone_steps = [], []
    for m in (1, 2, 6, 5):
        start, end = int(tree.start_bm[0, m]), int(tree.length_bm[0, m])
        alone_prompts.append([1, 3] + tokens[m, :start].tolist())
        alone_steps.append(tokens[m, start:end].tolist() + [0] * (4 - end + start))
    p, pv = left_padded(alone_prompts)
    step_mask = (np.asarray(alone_steps) != 0).astype(np.float64)
    alone = Batch(prompt_bp=p, prompt_valid_bp=pv, response_bt=jnp.asarray(alone_steps, jnp.int32),
                  mask_bt=jnp.asarray(step_mask), reward_b=jnp.asarray([1.0, 0.0, 1.0, 0.0]),
                  group_b=jnp.asarray([0, 0, 1, 1]), group_size=2)
    h_alone, margin_alone = margins(alone)
    assert np.abs(h_alone).min() > 1e-3  # the two steps' log-ratios differ: a non-trivial check
    np.testing.assert_allclose(h, h_alone, rtol=0, atol=1e-10)
    np.testing.assert_allclose(margin, margin_alone, rtol=0, atol=1e-10)
    np.testing.assert_allclose(margin, h.mean(), rtol=0, atol=1e-10)


# --- the collector ----------------------------------------------------------------------------

class _OneTokenSeparator:
    def encode(self, text):
        assert text == ","
        return [SEP]


def _context(separator=","):
    task = Task(name="tiny", tokenizer=_OneTokenSeparator(), max_prompt_len=4, max_answer_len=3, train=[], test=[],
                host_reward=None, device_reward=lambda r, m, a, av: outcome(r, m), step_separator=separator)
    return collectors.Context(graphdef=parts()[0], task=task, sampling=SamplingConfig(max_new_tokens=4, eos_id=EOS),
                              group_size=1, layout=sharding.layout_from_config(None))


def test_collector_rows_are_the_searchs_pairs():
    from polrl import algorithms

    options = dict(simulations=4, branching=3, max_depth=3, step_tokens=2, c_puct=1.0)
    collector = collectors.mcts_pairs(_context(), max_pairs=3, policy="reference", **options)
    assert collector.needs == frozenset({"reference"})
    state = steps.init_state(parts(1)[1], algorithms.dpo(), jax.random.key(0), ref_params=parts()[1])
    tokens, valid = left_padded(PROMPTS)
    data = {"prompt_bp": tokens, "prompt_valid_bp": valid, "answer_ba": jnp.zeros((2, 3), jnp.int32),
            "answer_valid_ba": jnp.ones((2, 3), bool)}
    batch, _, metrics = jax.jit(collector.collect)((), state, data, jax.random.key(2))
    example = collector.example(2)
    layout = lambda tree: [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]
    assert layout(batch) == layout(example)
    # The reference searched (not the state's own parameters): the same rows as a direct search with them.
    tree = search(parts()[1], tokens, valid, jax.random.key(2), SamplingConfig(max_new_tokens=4, eos_id=EOS), **options)
    chosen, rejected, gap, kept, found = step_pairs(tree, 3, 0.0, 3)
    want = pair_rows(tree, tokens, valid, chosen, rejected, kept, 0)
    for name in ("response_bt", "mask_bt", "reward_b", "group_b", "prompt_bp", "version_b"):
        np.testing.assert_allclose(np.asarray(getattr(batch, name)), np.asarray(getattr(want, name)), atol=1e-6)
    assert float(metrics["mcts/pairs"]) == float(np.asarray(kept).sum(1).mean()) > 0
    assert float(metrics["mcts/pairs_found"]) == float(np.asarray(found).mean())
    np.testing.assert_allclose(metrics["mcts/root_value"], np.asarray(tree.q_bm[:, 0]).mean(), atol=1e-6)
    np.testing.assert_allclose(metrics["mcts/tree_size"], np.asarray(tree.size_b).mean(), atol=1e-6)
    kept = np.asarray(kept)
    np.testing.assert_allclose(metrics["mcts/q_gap"], (np.asarray(gap) * kept).sum() / kept.sum(), atol=1e-6)
    r = np.asarray(batch.reward_b).reshape(-1, 2)
    assert (r[kept.reshape(-1)][:, 0] > r[kept.reshape(-1)][:, 1]).all()  # the chosen row has the higher Q


def test_collector_blends_the_named_process_reward_model():
    """prm names a frozen model of the run (PolicyState.models): the rows equal a direct search
    whose prefix score is that model's (``prm_prefix_score``) at the same weight."""
    from polrl import algorithms

    prm_graphdef, prm_params = tiny_params(dataclasses.replace(CFG, value_head=True), seed=2)
    ctx = dataclasses.replace(_context(), models={"prm": collectors.NamedModel(prm_graphdef, value_head=True)})
    options = dict(simulations=3, branching=2, max_depth=2, step_tokens=2, c_puct=1.0)
    collector = collectors.mcts_pairs(ctx, max_pairs=2, prm="prm", prefix_weight=0.5, **options)
    assert collector.needs == frozenset()
    state = steps.init_state(parts()[1], algorithms.dpo(), jax.random.key(0)).replace(models={"prm": prm_params})
    tokens, valid = left_padded(PROMPTS)
    data = {"prompt_bp": tokens, "prompt_valid_bp": valid, "answer_ba": jnp.zeros((2, 3), jnp.int32),
            "answer_valid_ba": jnp.ones((2, 3), bool)}
    batch, _, metrics = jax.jit(collector.collect)((), state, data, jax.random.key(2))
    direct = jax.jit(lambda params, prm: mcts(
        nnx.merge(parts()[0], params), tokens, valid, jax.random.key(2), SamplingConfig(max_new_tokens=4, eos_id=EOS),
        outcome=outcome, separator_id=SEP, prefix_weight=0.5,
        prefix_score=prm_prefix_score(prm_graphdef, prm, tokens, valid), **options))
    tree = direct(parts()[1], prm_params)
    plain = search(parts()[1], tokens, valid, jax.random.key(2), SamplingConfig(max_new_tokens=4, eos_id=EOS), **options)
    assert not np.allclose(np.asarray(tree.q_bm), np.asarray(plain.q_bm))  # the PRM changed the values
    np.testing.assert_allclose(metrics["mcts/root_value"], np.asarray(tree.q_bm[:, 0]).mean(), atol=1e-6)
    want = pair_rows(tree, tokens, valid, *[x for x in step_pairs(tree, 2, 0.0, 2)][:2],
                     step_pairs(tree, 2, 0.0, 2)[3], state.step)
    for name in ("response_bt", "mask_bt", "reward_b"):
        np.testing.assert_allclose(np.asarray(getattr(batch, name)), np.asarray(getattr(want, name)), atol=1e-6)
    with pytest.raises(ValueError, match=r"mcts_pairs: prm='prm' with prefix_weight=0"):
        collectors.mcts_pairs(ctx, prm="prm", **options)
    with pytest.raises(ValueError, match=r"mcts_pairs: prm='judge' is not a model of this run"):
        collectors.mcts_pairs(ctx, prm="judge", prefix_weight=0.5, **options)


def test_collector_errors():
    with pytest.raises(ValueError, match=r"step_tokens=9 must be an int in \[1, rollout.max_new_tokens=4\]"):
        collectors.mcts_pairs(_context(), step_tokens=9)
    with pytest.raises(ValueError, match="mcts_pairs: policy='old'"):
        collectors.mcts_pairs(_context(), step_tokens=2, policy="old")
    with pytest.raises(ValueError, match="mcts_pairs: max_pairs=0 must be an int >= 1"):
        collectors.mcts_pairs(_context(), step_tokens=2, max_pairs=0)
    with pytest.raises(ValueError, match="step_separator=None"):
        collectors.mcts_pairs(_context(separator=None), step_tokens=2)
