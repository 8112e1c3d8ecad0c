"""Test-time search with a process reward model (polrl.search.beam / best_of_n / select / evaluate).

Beam search and DVTS with deterministic expansion (``expand="top"``) and short steps equal a
brute-force search over an enumeration of every response of a tiny-vocabulary model: each
prefix's exact next-token probabilities and PRM score come from full forwards without a cache.
Best-of-N draws the flat sampler's samples, scores each step as a full forward does and picks
what the brute-force rule picks on them; beam search keeping every beam is best-of-N on the same
samples; the FLOP counts equal hand / brute-force totals; jit equals no jit; the selector picks
by hand.

The searches run on float64 models, where cached and uncached computations agree to ~1e-15, so
a ranking can only differ on a tie.
"""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl.models import TransformerConfig
from polrl.models.flops import transformer_forward_flops
from polrl.rollout import SamplingConfig, sample
from polrl.search import beam, best_of_n, evaluate, scoring, select
from polrl.tasks import chain
from polrl.tasks.registry import Task, chain_host_reward
from polrl.tasks.tokenizer import CharTokenizer
from tiny_models import tiny_params

V, EOS, SEP = 6, 2, 3
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=24,
                        max_len=16, dtype=jnp.float64, param_dtype=jnp.float64, value_head=True)
PROMPTS = [[1, 4, 5], [1, 5]]
DEPTH = 3  # one-token steps, three of them: 6 + 36 + 216 responses per prompt


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def models():
    """(policy graphdef, params), (PRM graphdef, params): two random float64 models."""
    with jax.enable_x64(True):
        return tiny_params(CFG, seed=0), tiny_params(CFG, seed=1)


def left_padded(prompts, width=3):
    tokens = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = p
    return jnp.asarray(tokens), jnp.asarray(tokens != 0)


@functools.partial(jax.jit, static_argnames=("config", "kw"))
def run_search(policy_params, prm_params, rng, config, kw):
    (pg, _), (rg, _) = models()
    tokens, valid = left_padded(PROMPTS)
    return beam.search(nnx.merge(pg, policy_params), nnx.merge(rg, prm_params), tokens, valid, rng, config,
                       **dict(kw))


def searched(config, **kw):
    (_, pp), (_, rp) = models()
    return run_search(pp, rp, jax.random.key(7), config, tuple(sorted(kw.items())))


def last_token(tokens_bt, mask_bt):
    """An AnswerFn: the response's last token (so weighted best-of-N groups several responses)."""
    last = jnp.maximum(mask_bt.sum(axis=1).astype(jnp.int32) - 1, 0)
    return jnp.take_along_axis(tokens_bt, last[:, None], axis=1), mask_bt.sum(axis=1) > 0


@functools.lru_cache(maxsize=None)
def enumeration(prompt_index):
    """{prefix: next-token probabilities} and {prefix: PRM score after it} for every response of
    up to DEPTH tokens, from full forwards without a cache."""
    (pg, pp), (rg, rp) = models()
    seqs = np.array(list(itertools.product(range(V), repeat=DEPTH)), np.int32)
    prompt, valid = left_padded([PROMPTS[prompt_index]])
    prompt, valid = jnp.repeat(prompt, len(seqs), 0), jnp.repeat(valid, len(seqs), 0)
    tokens, positions, mask = scoring.sequence_inputs(prompt, valid, jnp.asarray(seqs))
    logits = nnx.merge(pg, pp)(tokens, positions, mask)[:, prompt.shape[1] - 1:-1]
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    scores = np.asarray(scoring.token_scores(rg, rp, prompt, valid, jnp.asarray(seqs)))
    prob, score = {}, {}
    for row, seq in enumerate(seqs.tolist()):
        for d in range(DEPTH):
            prob[tuple(seq[:d])] = probs[row, d]
            score[tuple(seq[:d + 1])] = float(scores[row, d])
    return prob, score


AGG = {"last": lambda s: s[-1], "min": min}


def brute_search(prompt_index, n, subtrees, keep, how, step_len):
    """Beam search by its definition on the enumeration: each round every kept prefix (ranked r of
    a) expands its ⌊W/a⌋ + [r < W mod a] most likely next tokens, each continued greedily to the
    step's end (separator, EOS, ``step_len`` tokens or DEPTH in all); ended responses (EOS or
    DEPTH tokens) go to the pool, the `keep` best live ones are kept. Returns the pool's N best
    (sequence, step scores) and every decoded token's sequence up to it."""
    prob, score = enumeration(prompt_index)
    width, pool, expanded = n // subtrees, [], []
    for _ in range(subtrees):
        parents = [((), [])]
        for d in range(DEPTH):
            a = len(parents)
            children = []
            for r, (prefix, steps) in enumerate(parents):
                for tok in np.argsort(-prob[prefix], kind="stable")[: width // a + (r < width % a)]:
                    seq = prefix + (int(tok),)
                    expanded.append(seq)
                    while len(seq) - len(prefix) < step_len and seq[-1] not in (SEP, EOS) and len(seq) < DEPTH:
                        seq += (int(np.argmax(prob[seq])),)
                        expanded.append(seq)
                    children.append((seq, steps + [score[seq]]))
            ended = [c for c in children if c[0][-1] == EOS or len(c[0]) == DEPTH or d + 1 == DEPTH]
            pool += ended
            live = sorted([c for c in children if c not in ended], key=lambda c: -AGG[how](c[1]))
            parents = live[:keep]
            if not parents:
                break
    return sorted(pool, key=lambda c: -AGG[how](c[1]))[:n], expanded


def pool_rows(out, b):
    """The program's pool of prompt b as (sequence, step scores) pairs."""
    rows = []
    for j in range(out.tokens_bnt.shape[1]):
        length, steps = int(out.mask_bnt[b, j].sum()), int(out.steps_bn[b, j])
        rows.append((tuple(np.asarray(out.tokens_bnt[b, j, :length]).tolist()),
                     np.asarray(out.step_scores_bnd[b, j, :steps]).tolist()))
    return rows


def brute_choice(pool, how, rule):
    """The answer best-of-N (`best`) or weighted best-of-N on the last token (`weighted`) picks."""
    value = [AGG[how](s) for _, s in pool]
    if rule == "best":
        return pool[int(np.argmax(value))][0]
    votes = {}
    for (seq, _), v in zip(pool, value):
        votes[seq[-1]] = votes.get(seq[-1], 0.0) + v
    return max(votes, key=votes.get)


def counts_of(expanded, prompt_len):
    """Tokens and attended keys of the prefill plus one forward per expanded token (either model)."""
    tokens = prompt_len + len(expanded)
    keys = prompt_len * (prompt_len + 1) / 2 + sum(prompt_len + len(seq) for seq in expanded)
    return tokens, keys


TOP = SamplingConfig(max_new_tokens=DEPTH, eos_id=EOS)


@pytest.mark.parametrize("n,subtrees,keep,how,step_len", [(4, 1, 2, "last", 1), (6, 3, 1, "min", 1),
                                                          (4, 1, 2, "last", 2)], ids=["beam", "dvts", "beam_2_tokens"])
def test_search_equals_brute_force_enumeration(n, subtrees, keep, how, step_len):
    """Beam search (N = 4, M = 2: keep 2) and DVTS (N = 6, M = 2: 3 subtrees keeping 1, pruning
    by the min aggregate) with one-token steps, and beam search with steps of up to two tokens:
    the pool, every rule's choice and the FLOP counts of the brute force."""
    out = searched(TOP, n=n, subtrees=subtrees, keep=keep, sep_id=SEP, step_len=step_len, max_steps=DEPTH,
                   expand="top", aggregate=how)
    for b, prompt in enumerate(PROMPTS):
        pool, expanded = brute_search(b, n, subtrees, keep, how, step_len)
        got = pool_rows(out, b)
        assert sorted(s for s, _ in got) == sorted(s for s, _ in pool)
        for seq, steps in got:
            np.testing.assert_allclose(steps, dict(pool)[seq], rtol=0, atol=1e-12)
        np.testing.assert_allclose(out.value_bn[b], sorted((AGG[how](s) for _, s in pool), reverse=True), atol=1e-12)
        for rule in ("best", "weighted"):
            tokens, mask = best_of_n.choose(out, rule, last_token)
            chosen = np.asarray(tokens[b, : int(mask[b].sum())]).tolist()
            want = brute_choice(pool, how, rule)
            assert (tuple(chosen) if rule == "best" else chosen[-1]) == want
        tokens, keys = counts_of(expanded, len(prompt))
        for got_tokens, got_keys in ((out.policy_tokens_b, out.policy_keys_b), (out.prm_tokens_b, out.prm_keys_b)):
            assert float(got_tokens[b]) == tokens and float(got_keys[b]) == keys
        if step_len > 1:
            assert any(len(seq) > len(steps) for seq, steps in got)  # a step of two tokens


SAMPLED = SamplingConfig(max_new_tokens=6, eos_id=EOS)


@functools.lru_cache(maxsize=None)
def sampled():
    (pg, pp), (rg, rp) = models()
    tokens, valid = left_padded(PROMPTS)
    run = lambda pp, rp: best_of_n.best_of_n(nnx.merge(pg, pp), nnx.merge(rg, rp), tokens, valid, jax.random.key(4),
                                             SAMPLED, n=4, sep_id=SEP)
    return jax.jit(run)(pp, rp), run(pp, rp)


def test_best_of_n_draws_the_flat_samples_and_scores_every_step():
    """The N candidates are ``sample(…, num_samples=N)``'s (slot j = sample j), each step's score
    is the PRM's full-forward score at the step's end, and every rule picks what the brute force
    picks on them, for the last and the min aggregates."""
    out, _ = sampled()
    (pg, pp), (rg, rp) = models()
    tokens, valid = left_padded(PROMPTS)
    flat = sample(pg, pp, tokens, valid, jax.random.key(4), SAMPLED, num_samples=4)
    response = np.asarray(flat.response_bt).reshape(2, 4, -1)
    mask = np.asarray(flat.mask_bt).reshape(2, 4, -1)
    order = np.asarray(out.source_bn)
    for b in range(2):
        np.testing.assert_array_equal(np.sort(order[b]), np.arange(4))
        np.testing.assert_array_equal(np.asarray(out.tokens_bnt[b]), response[b, order[b]])
        np.testing.assert_array_equal(np.asarray(out.mask_bnt[b]), mask[b, order[b]])
    full = np.asarray(scoring.token_scores(rg, rp, jnp.repeat(tokens, 4, 0), jnp.repeat(valid, 4, 0), flat.response_bt))
    ends = np.asarray(scoring.step_ends(flat.response_bt, flat.mask_bt, SEP))
    pools = []
    for b in range(2):
        pool = []
        for j in order[b]:
            row = b * 4 + j
            pool.append((tuple(response[b, j][mask[b, j] > 0].tolist()), full[row][ends[row]].tolist()))
        pools.append(pool)
        got = pool_rows(out, b)
        for (seq, steps), (want_seq, want_steps) in zip(got, pool):
            assert seq == want_seq
            np.testing.assert_allclose(steps, want_steps, rtol=0, atol=1e-12)
    assert (np.asarray(out.steps_bn) > 1).any()  # some sample has several steps
    for how in ("last", "min"):
        rescored = out.replace(value_bn=beam.aggregate(out.step_scores_bnd, out.steps_bn, how))
        for rule in ("best", "weighted"):
            tokens_bt, mask_bt = best_of_n.choose(rescored, rule, last_token)
            for b in range(2):
                chosen = np.asarray(tokens_bt[b, : int(mask_bt[b].sum())]).tolist()
                assert (tuple(chosen) if rule == "best" else chosen[-1]) == brute_choice(pools[b], how, rule)


def test_jit_equals_no_jit():
    jitted, eager = sampled()
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-12),
                 jitted, eager)


def test_beam_keeping_every_beam_is_best_of_n_and_flops_by_hand():
    """N = 4 beams kept, one subtree, one-token steps, EOS never drawn (id outside the vocab): no
    beam is pruned, ends early or forks, so the pool is best-of-N's on the same samples with the
    same final scores. Their FLOPs by hand: every response has T = 3 tokens."""
    config = SamplingConfig(max_new_tokens=DEPTH, eos_id=V + 1)
    kept = searched(config, n=4, subtrees=1, keep=4, sep_id=SEP, step_len=1, max_steps=DEPTH)
    flat = searched(config, n=4, subtrees=4, keep=1, sep_id=SEP, step_len=DEPTH, max_steps=DEPTH)
    for x, y in ((kept.source_bn, flat.source_bn), (kept.tokens_bnt, flat.tokens_bnt), (kept.mask_bnt, flat.mask_bnt),
                 (kept.policy_tokens_b, flat.policy_tokens_b), (kept.policy_keys_b, flat.policy_keys_b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_allclose(kept.value_bn, flat.value_bn, rtol=0, atol=1e-12)
    assert (np.asarray(kept.steps_bn) == DEPTH).all()
    # Prompt of P tokens: P + 4·3 tokens; keys P(P+1)/2 + 4·Σ_{i<3} (P + i + 1).
    np.testing.assert_array_equal(kept.policy_tokens_b, [15, 14])   # P = 3, 2
    np.testing.assert_array_equal(kept.policy_keys_b, [66, 51])      # 6 + 4·15, 3 + 4·12
    np.testing.assert_array_equal(kept.prm_keys_b, [66, 51])
    # P_matmul = L·(d·e·(2h + 2k) + 3·d·f) + d·V = 2·(16·4·12 + 3·16·24) + 16·6 = 3936;
    # FLOPs = 2·3936·tokens + 4·L·h·e·keys = 7872·tokens + 128·keys, per model.
    flops = beam.search_flops(CFG, CFG, policy_tokens_b=kept.policy_tokens_b, policy_keys_b=kept.policy_keys_b,
                              prm_tokens_b=kept.prm_tokens_b, prm_keys_b=kept.prm_keys_b)
    np.testing.assert_allclose(flops["policy"], [7872 * 15 + 128 * 66, 7872 * 14 + 128 * 51], rtol=1e-12)
    np.testing.assert_allclose(flops["total"], 2 * flops["policy"], rtol=1e-12)
    np.testing.assert_allclose(flops["policy"], [transformer_forward_flops(CFG, 15, 66 / 15),
                                                 transformer_forward_flops(CFG, 14, 51 / 14)], rtol=1e-12)


def test_selection_rules_by_hand():
    value = jnp.array([[0.9, 0.5, 0.45, -jnp.inf], [0.2, 0.3, 0.1, 0.4]])
    span = jnp.array([[[7], [8], [8], [8]], [[1], [1], [2], [2]]])
    ok = jnp.array([[True, True, True, True], [False, False, False, False]])
    np.testing.assert_array_equal(best_of_n.select_best(value), [0, 3])
    # prompt 0: answer 8 sums 0.95 > 0.9 (the empty place takes no part); prompt 1: no answer → best.
    np.testing.assert_array_equal(best_of_n.select_weighted(value, span, ok), [1, 3])
    np.testing.assert_allclose(beam.aggregate(jnp.array([[0.5, 0.2, 0.9], [0.4, 0.0, 0.0]]), jnp.array([3, 1]), "mean"),
                               [1.6 / 3, 0.4])
    np.testing.assert_allclose(beam.aggregate(jnp.array([[0.5, 0.2, 0.9]]), jnp.array([0]), "prod"), [-np.inf])


def test_allot_by_hand():
    # W = 5: live slots 0, 2, 3 (values 0.1, 0.7, 0.4), keep 2 → slots 2 (rank 0) and 3 (rank 1)
    # stay; free slots 0, 1, 4 copy ranks 0, 1, 0: parent 2 gets children 0, 1, 2, parent 3 gets 0, 1.
    alive = jnp.array([[True, False, True, True, False], [False] * 5])
    value = jnp.array([[0.1, 0.9, 0.7, 0.4, 0.0], [0.0] * 5])
    src, child, live = beam.allot(alive, value, 2)
    np.testing.assert_array_equal(src[0], [2, 3, 2, 3, 2])
    np.testing.assert_array_equal(child[0], [1, 1, 0, 0, 2])
    assert live[0].all() and not live[1].any()
    np.testing.assert_array_equal(src[1], np.arange(5))


def test_compute_optimal_selector_by_hand():
    table = {("best_of_n", 4, 1): (0.80, 10.0), ("beam", 4, 1): (0.80, 8.0), ("beam", 16, 1): (0.95, 40.0),
             ("best_of_n", 4, 3): (0.20, 10.0), ("dvts", 16, 3): (0.50, 30.0), ("beam", 16, 3): (0.60, 40.0)}
    # Bin 1: equal accuracy → the cheaper beam@4; bin 3 within 30 FLOPs: dvts@16.
    assert select.compute_optimal(table, 30.0) == {1: ("beam", 4, 0.80, 8.0), 3: ("dvts", 16, 0.50, 30.0)}
    assert select.compute_optimal(table, 100.0) == {1: ("beam", 16, 0.95, 40.0), 3: ("beam", 16, 0.60, 40.0)}
    with pytest.raises(ValueError, match=r"bin 3 fits flop_budget=9.0; the cheapest needs 10.0: raise flop_budget"):
        select.compute_optimal(table, 9.0)
    results = {("beam", 4): {"accuracy_by_difficulty": {1: 0.5, 2: 1.0}, "flops_by_difficulty": {1: 3.0, 2: 4.0}}}
    assert select.table_from_results(results) == {("beam", 4, 1): (0.5, 3.0), ("beam", 4, 2): (1.0, 4.0)}


def test_argument_errors():
    with pytest.raises(ValueError, match=r"subtrees=3 must divide the budget n=4"):
        beam.check_search(4, subtrees=3, keep=1, step_len=1, max_steps=1, max_new_tokens=2, expand="sample",
                          aggregate="last", vocab_size=V)
    with pytest.raises(ValueError, match=r"keep=3 must be an int in \[1, n / subtrees = 2\]"):
        beam.check_search(4, subtrees=2, keep=3, step_len=1, max_steps=1, max_new_tokens=2, expand="sample",
                          aggregate="last", vocab_size=V)
    with pytest.raises(ValueError, match=r"n / subtrees = 8 > vocab_size=6"):
        beam.check_search(8, subtrees=1, keep=1, step_len=1, max_steps=1, max_new_tokens=2, expand="top",
                          aggregate="last", vocab_size=V)
    with pytest.raises(ValueError, match=r"aggregate='max'"):
        beam.aggregate(jnp.zeros((1, 1)), jnp.ones((1,), jnp.int32), "max")
    (pg, _), (rg, _) = models()
    with pytest.raises(ValueError, match=r"beam_width=3 must divide budget=8 for dvts"):
        evaluate.search_program("dvts", 8, pg, rg, TOP, SEP, beam_width=3)
    with pytest.raises(ValueError, match=r"method='mcts'"):
        evaluate.search_program("mcts", 8, pg, rg, TOP, SEP)


TOKENIZER = CharTokenizer(chars="0123456789+-=,#")
CHAIN_CFG = TransformerConfig(vocab_size=TOKENIZER.vocab_size, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1,
                              mlp_dim=16, max_len=32, dtype=jnp.float64, param_dtype=jnp.float64, value_head=True)


def test_evaluate_on_chain_examples():
    """``evaluate`` over a few chain examples (DVTS, N = 4, M = 2): correctness is the task's host
    reward of the chosen completions, difficulty the labelled steps, FLOPs per prompt positive
    and split into policy + PRM."""
    examples = [{"prompt": p, "answer": chain.scratchpad(*chain.parse_prompt(p))} for p in ("1+2=", "3+4+5=", "9+9+1=")]
    task = Task(name="chain", tokenizer=TOKENIZER, max_prompt_len=8, max_answer_len=24, train=[], test=examples,
                host_reward=chain_host_reward, step_separator=",")
    policy, prm = tiny_params(CHAIN_CFG, seed=0), tiny_params(CHAIN_CFG, seed=1)
    sampling = SamplingConfig(max_new_tokens=8, eos_id=TOKENIZER.eos_id)
    result = evaluate.evaluate("dvts", 4, policy, prm, task, examples, jax.random.key(0), sampling=sampling,
                               beam_width=2, max_steps=4, batch_size=2)
    np.testing.assert_array_equal(result["difficulty_b"], [1, 2, 2])
    np.testing.assert_array_equal(result["correct_b"], chain_host_reward(result["completions"], examples) >= 1)
    assert result["prompts_by_difficulty"] == {1: 1, 2: 2}
    assert set(result["accuracy_by_difficulty"]) == {1, 2}
    np.testing.assert_allclose(result["flops_b"], result["policy_flops_b"] + result["prm_flops_b"])
    assert (result["prm_flops_b"] > 0).all() and result["flops_per_prompt"] == pytest.approx(result["flops_b"].mean())
