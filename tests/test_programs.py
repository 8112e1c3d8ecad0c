"""The programs task (polrl.tasks.programs) and its stack-language interpreters
(polrl.tasks.program_interpreter): semantics of hand-written programs, every crash kind with its
observation string, the JAX interpreter against the Python one, the unit-test reward of
hand-made responses, equivalence classes of a hand-made batch, the source languages of hand-made
expressions, the generator's invariants and its held-out split."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl.tasks import get_task
from polrl.tasks.data import task_batch
from polrl.tasks.program_interpreter import (
    BRACKETS, DIV_ZERO, EMPTY, INSTRUCTIONS, NO_END, OK, OVERFLOW, RANGE, STEP_LIMIT, SYNTAX, UNDERFLOW,
    Language, Limits, Result, describe, run, run_tokens,
)
from polrl.tasks.programs import (
    MAX_PROGRAM_TOKENS, SHOWN_INPUTS, TEST_INPUTS, ProgramsConfig, equivalence_classes, format_prompt, infix,
    host_unit_test_reward, make_splits, postfix, problem_key, sample_problems, unit_test_reward,
)
from polrl.tasks.tokenizer import CharTokenizer

TOK = CharTokenizer()
LANG = Language()


# ----------------------------------------------------------------------------- semantics


@pytest.mark.parametrize("program, x, value", [
    ("x2*1+", 3, 7),
    ("xd*", -4, 16),             # dup
    ("x3/", 7, 2), ("x3/", -7, -3),   # floor division
    ("x3%", -7, 2), ("x3%", 7, 1),    # modulo takes the divisor's sign
    ("x1s-", 5, -4),             # swap: 1 − x
    ("12s-", 0, 1),
    ("x[1-]", 4, 0),             # count down to 0
    ("1x[s2*s1-]s", 5, 32),      # 2^x by a loop: 39 steps
    ("1x[s2*s1-]s", 0, 1),       # the loop body never runs
    ("x1", 9, 1),                # the output is the top; values below it are left over
])
def test_python_interpreter_values(program, x, value):
    assert run(program, x) == Result(OK, value, len(program))


@pytest.mark.parametrize("program, x, status, pc, message", [
    ("x2q+", 1, SYNTAX, 2, "error: syntax error at instruction 2 ('q')"),
    ("x]", 1, BRACKETS, 1, "error: unbalanced brackets at instruction 1 (']')"),
    ("[[]x", 1, BRACKETS, 0, "error: unbalanced brackets at instruction 0 ('[')"),
    ("x+", 1, UNDERFLOW, 1, "error: stack underflow at instruction 1 ('+')"),
    ("d", 1, UNDERFLOW, 0, "error: stack underflow at instruction 0 ('d')"),
    ("1s", 1, UNDERFLOW, 1, "error: stack underflow at instruction 1 ('s')"),
    ("[]", 1, UNDERFLOW, 0, "error: stack underflow at instruction 0 ('[')"),
    ("111111111", 1, OVERFLOW, 8, "error: stack overflow (more than 8 values) at instruction 8 ('1')"),
    ("x0/", 5, DIV_ZERO, 2, "error: division by zero at instruction 2 ('/')"),
    ("xx1-%", 1, DIV_ZERO, 4, "error: division by zero at instruction 4 ('%')"),
    ("99*9*9*9*", 1, RANGE, 8, "error: value out of range (beyond ±9999) at instruction 8 ('*')"),
    ("x", 10_000, RANGE, 0, "error: value out of range (beyond ±9999) at instruction 0 ('x')"),
    ("1[]", 1, STEP_LIMIT, 3, "error: step limit exceeded (more than 64 steps)"),
    ("1x[s2*s1-]s", 9, STEP_LIMIT, 11, "error: step limit exceeded (more than 64 steps)"),  # 67 steps
    ("x[1-]", -1, STEP_LIMIT, 5, "error: step limit exceeded (more than 64 steps)"),  # never reaches 0
    ("", 1, EMPTY, 0, "error: empty stack at end"),
])
def test_every_crash_kind_and_its_observation(program, x, status, pc, message):
    result = run(program, x)
    assert result == Result(status, 0, pc)
    assert describe(result, program) == message
    # the compiled interpreter agrees, on the tokens of the program followed by EOS
    ids = TOK.encode(program, eos=True)
    got = run_tokens(LANG, jnp.asarray(ids), jnp.ones(len(ids), bool), jnp.asarray([x]))
    assert tuple(int(v[0]) for v in got) == (status, 0, pc)


def test_observation_of_a_successful_run_and_limits():
    assert describe(run("x2*", 4), "x2*") == "ok: 8"
    small = Limits(max_steps=3, max_stack=2, max_value=20)
    assert run("x1+1+", 0, small).status == STEP_LIMIT  # 5 instructions > 3 steps
    assert run("111", 0, small) == Result(OVERFLOW, 0, 2)
    assert run("x5*", 5, small) == Result(RANGE, 0, 2)
    with pytest.raises(ValueError, match="max_stack"):
        Limits(max_stack=1)
    with pytest.raises(ValueError, match="max_value"):
        Limits(max_value=50_000)  # products of two operands must stay within int32


def test_token_programs_without_eos_or_with_stray_tokens():
    x = jnp.asarray([2])
    # no EOS among the valid tokens: the program never ended
    ids = jnp.asarray(TOK.encode("x2*"))
    assert tuple(int(v[0]) for v in run_tokens(LANG, ids, jnp.ones(3, bool), x)) == (NO_END, 0, 3)
    # tokens after the first EOS are ignored, valid or not
    ids = jnp.asarray(TOK.encode("x2*", eos=True) + TOK.encode("+++"))
    assert tuple(int(v[0]) for v in run_tokens(LANG, ids, jnp.ones(7, bool), x)) == (OK, 4, 3)
    # an invalid (masked) token before the EOS is a syntax error at its position
    ids = jnp.asarray(TOK.encode("x2*", eos=True))
    valid = jnp.asarray([True, False, True, True])
    assert tuple(int(v[0]) for v in run_tokens(LANG, ids, valid, x)) == (SYNTAX, 0, 1)
    # BOS / EOS / pad ids are no instructions
    ids = jnp.asarray([TOK.bos_id] + TOK.encode("x", eos=True))
    assert int(run_tokens(LANG, ids, jnp.ones(3, bool), x)[0][0]) == SYNTAX


def test_compiled_interpreter_matches_the_python_one_on_random_programs():
    rng = np.random.default_rng(0)
    chars = list(INSTRUCTIONS + "q")
    programs = ["".join(rng.choice(chars, rng.integers(0, 11))) for _ in range(600)]
    programs += ["1x[s2*s1-]s", "x[1-]", "x[d1-]+", "x2-[1+]"]
    xs = np.array([-3, -1, 0, 1, 2, 5, 9, 10_000])
    width = 12
    ids = np.zeros((len(programs), width), np.int32)
    valid = np.zeros((len(programs), width), bool)
    for b, p in enumerate(programs):
        e = TOK.encode(p, eos=True)
        ids[b, :len(e)], valid[b, :len(e)] = e, True
    fn = jax.vmap(lambda t, v: run_tokens(LANG, t, v, jnp.asarray(xs)))
    status, value, pc = (np.asarray(a) for a in jax.jit(fn)(ids, valid))
    for b, p in enumerate(programs):
        for j, x in enumerate(xs):
            assert (status[b, j], value[b, j], pc[b, j]) == tuple(run(p, int(x))), (p, x)
    assert len(set(status.ravel().tolist())) >= 8  # the sample reaches most statuses
    eager = fn(jnp.asarray(ids[:40]), jnp.asarray(valid[:40]))
    for a, b in zip(eager, (status[:40], value[:40], pc[:40])):
        np.testing.assert_array_equal(np.asarray(a), b)


# ----------------------------------------------------------------------------- reward


def _rows(programs, width, eos=True):
    ids = np.zeros((len(programs), width), np.int32)
    mask = np.zeros((len(programs), width), np.float32)
    for b, p in enumerate(programs):
        e = TOK.encode(p, eos=eos)
        ids[b, :len(e)], mask[b, :len(e)] = e, 1.0
    return ids, mask


# Against the answer 2x+1 on x = −2 … 5 (8 tests):
RESPONSES = [
    ("xd+1+", 1.0),    # equivalent: every test passes
    ("2x*1+", 1.0),
    ("x2*", 0.0),      # 2x ≠ 2x + 1 everywhere
    ("xx*2+", 1 / 8),  # x² + 2 = 2x + 1 only at x = 1
    ("x1+", 1 / 8),    # x + 1 = 2x + 1 only at x = 0
    ("x0/", 0.0),      # crashes on every test
    ("x2x-/", 1 / 8),  # x // (2 − x): crashes at x = 2; equals 2x + 1 only at x = −1 (−1 // 3 = −1)
    ("xd*x-1+", 2 / 8),  # x² − x + 1 = 2x + 1 at x = 0 and x = 3
]


@pytest.mark.parametrize("mode", ["all_pass", "fraction"])
def test_unit_test_reward_of_hand_made_programs(mode):
    answer = "x2*1+"
    expected = np.array([r if mode == "fraction" else float(r == 1.0) for _, r in RESPONSES], np.float32)
    width = MAX_PROGRAM_TOKENS + 1
    response, mask = _rows([p for p, _ in RESPONSES], width)
    ans, ans_valid = _rows([answer] * len(RESPONSES), width)
    reward_fn = unit_test_reward(reward=mode)
    got = reward_fn(jnp.asarray(response), jnp.asarray(mask), jnp.asarray(ans), jnp.asarray(ans_valid.astype(bool)))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-7)
    jitted = jax.jit(reward_fn)(response, mask, ans, ans_valid.astype(bool))
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(got))
    host = [host_unit_test_reward(p, answer, reward=mode) for p, _ in RESPONSES]
    np.testing.assert_allclose(host, expected, atol=1e-7)
    # a response cut off before its EOS is a crash: no test passes
    cut, cut_mask = _rows(["xd+1+"], width, eos=False)
    assert float(reward_fn(cut, cut_mask, ans[:1], ans_valid[:1].astype(bool))[0]) == 0.0
    with pytest.raises(ValueError, match="reward"):
        unit_test_reward(reward="partial")


# ----------------------------------------------------------------------------- equivalence


def test_equivalence_classes_of_a_hand_made_batch():
    programs = ["x2*", "xx+", "x1+", "2x*", "xd+", "1x+", "x0/", "x+", "x1s+", "xx*", "x0%", "xd*"]
    # 2x: x2* xx+ 2x* xd+ | x+1: x1+ 1x+ x1s+ | div by 0 everywhere: x0/ x0% | underflow: x+ | x²: xx* xd*
    assert equivalence_classes(programs) == [0, 0, 1, 0, 0, 1, 2, 3, 1, 4, 2, 4]
    # on the inputs {0, 2} alone, 2x and x² agree
    assert equivalence_classes(["x2*", "xx*", "xd+"], inputs=(0, 2)) == [0, 0, 0]
    assert equivalence_classes(["x2*", "xx*"]) == [0, 1]


# x·2 + 1, x − (2 + x), (x + 1)·3, x·(x·3), x − 1 + 2, x·2 − 3·x
TREES = [("+", ("*", "x", "2"), "1"), ("-", "x", ("+", "2", "x")), ("*", ("+", "x", "1"), "3"),
         ("*", "x", ("*", "x", "3")), ("+", ("-", "x", "1"), "2"), ("-", ("*", "x", "2"), ("*", "3", "x"))]


@pytest.mark.parametrize("tree, infix_text, prefix_text, program", [
    (TREES[0], "x*2+1", "+*x21", "x2*1+"),
    (TREES[1], "x-(2+x)", "-x+2x", "x2x+-"),
    (TREES[2], "(x+1)*3", "*+x13", "x1+3*"),
    (TREES[3], "x*(x*3)", "*x*x3", "xx3**"),
    (TREES[4], "x-1+2", "+-x12", "x1-2+"),
    (TREES[5], "x*2-3*x", "-*x2*3x", "x2*3x*-"),
])
def test_source_languages_of_hand_made_expressions(tree, infix_text, prefix_text, program):
    assert format_prompt(tree, "infix") == infix_text + "="
    assert format_prompt(tree, "prefix") == prefix_text + "="
    assert postfix(tree) == program


def test_examples_source_shows_the_function_on_0_to_3():
    assert format_prompt(TREES[0], "examples") == "0:1,1:3,2:5,3:7="      # 2x + 1
    assert format_prompt(TREES[1], "examples") == "0:-2,1:-2,2:-2,3:-2="  # x − (2 + x) = −2


def _leaves_and_ops(text):
    return [c for c in text if c == "x" or c.isdigit()], sorted(c for c in text if c in "+-*")


@pytest.mark.parametrize("source", ["infix", "prefix", "infix,prefix,examples"])
def test_generated_problems_hold_equivalent_programs(source):
    config = ProgramsConfig(min_ops=1, max_ops=4, source=source, num_train=10, num_test=10)
    examples = sample_problems(config, np.random.default_rng(3), 300)
    assert {e["ops"] for e in examples} == {1, 2, 3, 4}  # a spread of difficulty
    for e in examples:
        programs = e["equivalents"].split(" ")
        assert len(programs) >= 2 and len(set(programs)) == len(programs)
        assert e["answer"] == programs[0]  # canonical labels
        assert set(equivalence_classes(programs)) == {0}
        assert all(len(p) <= MAX_PROGRAM_TOKENS for p in programs)
        assert all(run(e["answer"], x).status == OK for x in TEST_INPUTS)
        assert len(e["prompt"]) <= config.max_prompt_chars and e["prompt"].endswith("=")
        if ":" in e["prompt"]:  # examples: the answer's outputs on 0–3
            outputs = [run(e["answer"], x).value for x in SHOWN_INPUTS]
            assert e["prompt"] == ",".join(f"{x}:{y}" for x, y in zip(SHOWN_INPUTS, outputs)) + "="
        else:  # a translation: the same leaves in the same order, the same operators
            assert _leaves_and_ops(e["prompt"]) == _leaves_and_ops(e["answer"])
    kinds = {"examples" if ":" in e["prompt"] else "prefix" if e["prompt"][0] in "+-*" else "infix" for e in examples}
    assert kinds == set(config.source_list)
    random_labels = sample_problems(ProgramsConfig(label="random"), np.random.default_rng(3), 300)
    assert any(e["answer"] != e["equivalents"].split(" ")[0] for e in random_labels)
    assert all(e["answer"] in e["equivalents"].split(" ") for e in random_labels)


def test_held_out_prompts_never_appear_in_train_and_few_repeat():
    config = ProgramsConfig(min_ops=2, max_ops=4, source="infix,prefix", num_train=3000, num_test=300)
    splits = make_splits(config)
    train_prompts = {e["prompt"] for e in splits["train"]}
    train_keys = {problem_key(e) for e in splits["train"]}
    assert not any(e["prompt"] in train_prompts or problem_key(e) in train_keys for e in splits["test"])
    draws = sample_problems(config, np.random.default_rng(0), 2000)
    assert len({e["prompt"] for e in draws}) > 0.9 * len(draws)
    # examples prompts of different expressions can coincide (x·2 and x+x), so they key on the prompt
    assert problem_key({"prompt": "0:0,1:2,2:4,3:6=", "equivalents": "x2* 2x*"}) == "0:0,1:2,2:4,3:6="
    # a translation keys on its expression, so an expression is held out in both languages at once
    assert problem_key({"prompt": "x*2=", "equivalents": "x2* 2x*"}) == "x2*"
    assert problem_key({"prompt": "*x2=", "equivalents": "x2* 2x*"}) == "x2*"


def test_config_checks_and_prompt_length_bound():
    with pytest.raises(ValueError, match="ops"):
        ProgramsConfig(ops="+q")
    with pytest.raises(ValueError, match="max_ops"):
        ProgramsConfig(max_ops=5)
    with pytest.raises(ValueError, match="source"):
        ProgramsConfig(source="infix,lisp")
    with pytest.raises(ValueError, match="source"):
        ProgramsConfig(source="infix,infix")
    with pytest.raises(ValueError, match="label"):
        ProgramsConfig(label="shortest")
    # infix with 4 operators: 5 leaves, 4 operators, 2·3 parentheses and "=", as "x-(x-(x-(x-x)))="
    assert ProgramsConfig(max_ops=4).max_prompt_chars == 16
    assert len(infix(("-", "x", ("-", "x", ("-", "x", ("-", "x", "x"))))) + "=") == 16
    assert ProgramsConfig(max_ops=4, source="prefix").max_prompt_chars == 10       # "-x-x-x-xx="
    assert ProgramsConfig(max_ops=2, source="examples").max_prompt_chars == len("0:-999,1:-999,2:-999,3:-999=")
    assert ProgramsConfig(max_ops=4, source="prefix,examples").max_prompt_chars == 28


def test_programs_task_labels_pass_their_own_tests(tmp_path):
    task = get_task("programs", data_dir=str(tmp_path), num_train=50, num_test=20, reward="fraction")
    data = task_batch(task, [task.test[i] for i in range(len(task.test))])
    ans, valid = jnp.asarray(data["answer_ba"]), jnp.asarray(data["answer_valid_ba"])
    np.testing.assert_array_equal(np.asarray(task.device_reward(ans, valid.astype(jnp.float32), ans, valid)), 1.0)
    # every equivalent program of a problem passes the problem's tests
    rows = [(p, e["answer"]) for e in data["examples"] for p in e["equivalents"].split(" ")]
    response, mask = _rows([p for p, _ in rows], task.max_answer_len)
    ref, ref_valid = _rows([a for _, a in rows], task.max_answer_len)
    np.testing.assert_array_equal(np.asarray(task.device_reward(response, mask, ref, ref_valid.astype(bool))), 1.0)
    completions = [e["answer"] for e in data["examples"]]
    np.testing.assert_array_equal(task.host_reward(completions, data["examples"]), 1.0)
    with pytest.raises(ValueError, match="reward"):
        get_task("programs", data_dir=str(tmp_path), reward="partial")
