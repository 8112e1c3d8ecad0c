"""Programs task: translate an expression into a program of the tiny stack language.

A problem is a function f of one integer x, given by a random expression over x and the digits
1–9 with k binary operators from ``ops`` (k uniform in [min_ops, max_ops]: the difficulty). The
prompt is f written in a source language — ``source`` names one or several, each problem's drawn
uniformly — and the answer is a program of ``polrl.tasks.program_interpreter`` computing f:

    infix     "x*2+1="               the fewest parentheses that parse back to the expression
    prefix    "+*x21="               Polish notation
    examples  "0:1,1:3,2:5,3:7="     f on the inputs 0–3 (synthesis from input/output examples)
    answer    "x2*1+"                (or "2x*1+", "xd+1+", "x2*23+1-s+"… see below)

The translation sources are the task of OORL ("On-Policy Optimization with Group Equivalent
Preference for Multi-Programming Language Understanding", Wu et al. 2025, arXiv 2505.12723):
code in one language rendered in another, checked by unit tests. The default is "infix"; the
experiments use "infix,prefix" (two source languages, one target). "examples" is the harder
synthesis variant (a tiny model memorises its prompts and does not generalise from few of them).

The hidden unit tests are the inputs −2, −1, 0, 1, 2, 3, 4, 5: a program passes a test when it
runs without a crash and outputs f(x). The expected outputs are those of the problem's
labelled answer, run by the same interpreter, so the device reward (``unit_test_reward``, one
compiled interpreter over token ids) needs nothing beyond the task's answer arrays. The reward
is 1 iff every test passes (OORL's binary unit-test reward), or the fraction of passed tests
with ``reward="fraction"``. A crash (stack underflow, division by zero, step limit, …) passes no
test.

Every problem comes with several semantically equivalent programs (``"equivalents"``, space
separated, the canonical postfix program first): random renderings of its expression — commuted
"+"/"*" operands, "b a s op" for "a b op", "a d op" for "a a op", "a d +" for "a 2 *", a digit c
written "c₁ c₂ +" — kept when ``equivalence_classes`` puts them in the class of the canonical
program (the same status and output on every test). The labelled answer is the canonical program
(``label="canonical"``) or one of the equivalents drawn uniformly (``label="random"``).

Splits come from `draw_splits` keyed on ``problem_key`` (10% held out): a translation prompt by
its expression (held out in every source language at once), an examples prompt by itself; no
held-out prompt is ever in train. The data is a pure function of the config; change VERSION
whenever the generator's output changes.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from polrl.tasks.data import GeneratedSplits, config_splits
from polrl.tasks.program_interpreter import OK, Language, Limits, run, run_tokens

SHOWN_INPUTS = (0, 1, 2, 3)
TEST_INPUTS = (-2, -1, 0, 1, 2, 3, 4, 5)
MAX_PROGRAM_TOKENS = 16
MAX_OUTPUT = 999  # |f(x)| on every test input, so prompts stay short
REWARDS = ("all_pass", "fraction")
SOURCES = ("infix", "prefix", "examples")
LABELS = ("canonical", "random")
_OPS = "+-*/%"
_ATTEMPTS = 24  # random renderings tried per problem when collecting equivalents


@dataclasses.dataclass(eq=False)
class ProgramsConfig(tfds.core.BuilderConfig):
    """Difficulty knobs; `name` is derived from them (it names the data folder)."""

    name: str = dataclasses.field(init=False, default="")
    min_ops: int = 1
    max_ops: int = 4
    ops: str = "+-*"
    source: str = "infix"
    label: str = "canonical"
    num_equivalents: int = 4
    num_train: int = 20_000
    num_test: int = 1_000
    seed: int = 0

    def __post_init__(self):
        checks = [
            ("min_ops", 1 <= self.min_ops, "an int >= 1"),
            ("max_ops", self.min_ops <= self.max_ops <= 4, f"an int in [min_ops={self.min_ops}, 4]"),
            ("label", self.label in LABELS, f"one of {LABELS}"),
            ("num_equivalents", 1 <= self.num_equivalents <= 16, "an int in [1, 16]"),
            ("num_train", self.num_train >= 1, "an int >= 1"),
            ("num_test", self.num_test >= 1, "an int >= 1"),
            ("seed", self.seed >= 0, "an int >= 0"),
        ]
        for field, ok, expected in checks:
            if not ok:
                raise ValueError(f"ProgramsConfig: {field}={getattr(self, field)!r}; it must be {expected}.")
        if not self.ops or set(self.ops) - set(_OPS) or len(set(self.ops)) < len(self.ops):
            raise ValueError(f'ProgramsConfig: ops={self.ops!r}; it must be distinct operators from "{_OPS}", e.g. "+-*".')
        if not self.source_list or set(self.source_list) - set(SOURCES) or len(set(self.source_list)) < len(self.source_list):
            raise ValueError(f'ProgramsConfig: source={self.source!r}; it must be distinct names from {SOURCES} '
                             'joined by ",", e.g. "infix" or "infix,prefix".')
        self.name = (f"ops{self.min_ops}to{self.max_ops}-{''.join('pmtdr'[_OPS.index(o)] for o in self.ops)}"
                     f"-{'+'.join(self.source_list)}-{self.label}"
                     f"-eq{self.num_equivalents}-train{self.num_train}-test{self.num_test}-seed{self.seed}")

    @property
    def source_list(self) -> list[str]:
        return [s.strip() for s in self.source.split(",") if s.strip()]

    @property
    def max_prompt_chars(self) -> int:
        """Longest prompt with "=": infix n ops, n+1 leaves and ≤ 2(n−1) parentheses (the root
        has none); prefix 2n+1 characters; examples "i:f(i)" per shown input (|f| ≤ MAX_OUTPUT)
        and commas."""
        n = self.max_ops
        chars = {"infix": 2 * n + 1 + 2 * (n - 1), "prefix": 2 * n + 1,
                 "examples": len(SHOWN_INPUTS) * (3 + len(str(-MAX_OUTPUT))) - 1}
        return max(chars[s] for s in self.source_list) + 1


def behaviour(program: str, inputs: Sequence[int] = TEST_INPUTS) -> tuple:
    """(status, output) of ``program`` on each input: what equivalence is decided on."""
    return tuple((r.status, r.value) for r in (run(program, x) for x in inputs))


def equivalence_classes(programs: Sequence[str], inputs: Sequence[int] = TEST_INPUTS) -> list[int]:
    """Class id per program: programs with the same behaviour on ``inputs`` (same status and
    output on every input) share an id; ids count distinct behaviours in order of first
    appearance."""
    ids: dict[tuple, int] = {}
    return [ids.setdefault(behaviour(p, inputs), len(ids)) for p in programs]


def random_tree(rng: np.random.Generator, n_ops: int, ops: str):
    """A random expression with ``n_ops`` binary operators: a leaf ("x" or a digit 1–9) or a
    tuple (op, left, right); "/" and "%" get a constant divisor 2–9."""
    if n_ops == 0:
        return "x" if rng.random() < 0.5 else str(rng.integers(1, 10))
    op = ops[rng.integers(len(ops))]
    if op in "/%":
        return op, random_tree(rng, n_ops - 1, ops), str(rng.integers(2, 10))
    left = int(rng.integers(0, n_ops))
    return op, random_tree(rng, left, ops), random_tree(rng, n_ops - 1 - left, ops)


def postfix(tree) -> str:
    """The canonical program of an expression: its postfix form."""
    if isinstance(tree, str):
        return tree
    op, a, b = tree
    return postfix(a) + postfix(b) + op


def rendering(tree, rng: np.random.Generator) -> str:
    """A random program computing ``tree`` (the rewrites in the module docstring)."""
    if isinstance(tree, str):
        if tree != "x" and int(tree) >= 2 and rng.random() < 0.25:
            a = int(rng.integers(1, int(tree)))
            return f"{a}{int(tree) - a}+"
        return tree
    op, a, b = tree
    sa, sb = rendering(a, rng), rendering(b, rng)
    forms = [sa + sb + op, sb + sa + "s" + op]
    if op in "+*":
        forms.append(sb + sa + op)
    if a == b:
        forms.append(sa + "d" + op)
    if op == "*" and b == "2":
        forms.append(sa + "d+")
    return forms[int(rng.integers(len(forms)))]


def equivalent_programs(tree, rng: np.random.Generator, num: int) -> list[str]:
    """Up to ``num`` distinct programs equivalent to ``postfix(tree)`` on the tests, at most
    ``MAX_PROGRAM_TOKENS`` long, the canonical one first."""
    canonical = postfix(tree)
    candidates = [canonical] + [rendering(tree, rng) for _ in range(_ATTEMPTS)]
    candidates = list(dict.fromkeys(p for p in candidates if len(p) <= MAX_PROGRAM_TOKENS))
    classes = equivalence_classes(candidates)
    return [p for p, c in zip(candidates, classes) if c == classes[0]][:num]


def infix(tree) -> str:
    """The expression in infix with the fewest parentheses that parse back to ``tree``: "*", "/",
    "%" bind tighter than "+", "-"; operators associate to the left, so a right operand of the
    same precedence is parenthesized ("x-(2+x)", "x*(x*3)")."""
    if isinstance(tree, str):
        return tree
    op, a, b = tree
    level = lambda t: 0 if isinstance(t, str) else 1 + (t[0] in "*/%")
    sa, sb = infix(a), infix(b)
    if level(a) and level(a) < level(tree):
        sa = f"({sa})"
    if level(b) and level(b) <= level(tree):
        sb = f"({sb})"
    return sa + op + sb


def prefix(tree) -> str:
    """The expression in prefix (Polish) notation: "+*x21" for x·2 + 1."""
    if isinstance(tree, str):
        return tree
    op, a, b = tree
    return op + prefix(a) + prefix(b)


def format_examples(outputs: Sequence[int]) -> str:
    """ "0:1,1:3,2:5,3:7" for the outputs on ``SHOWN_INPUTS``."""
    return ",".join(f"{x}:{y}" for x, y in zip(SHOWN_INPUTS, outputs))


def format_prompt(tree, source: str) -> str:
    """The prompt of ``tree`` in the source language ``source`` (one of ``SOURCES``), then "="."""
    if source == "infix":
        return infix(tree) + "="
    if source == "prefix":
        return prefix(tree) + "="
    outputs = [run(postfix(tree), x).value for x in SHOWN_INPUTS]
    return format_examples(outputs) + "="


def sample_problems(config: ProgramsConfig, rng: np.random.Generator, n: int) -> list[dict]:
    """n examples {"prompt", "answer", "equivalents", "ops"} drawn as the module says; an
    expression is redrawn when it ignores x (or is constant on the tests), crashes on a test,
    leaves |f| ≤ MAX_OUTPUT or its canonical program exceeds MAX_PROGRAM_TOKENS."""
    examples = []
    sources = config.source_list
    while len(examples) < n:
        n_ops = int(rng.integers(config.min_ops, config.max_ops + 1))
        tree = random_tree(rng, n_ops, config.ops)
        canonical = postfix(tree)
        results = [run(canonical, x) for x in TEST_INPUTS]
        if ("x" not in canonical or len(canonical) > MAX_PROGRAM_TOKENS or len({r.value for r in results}) == 1
                or any(r.status != OK or abs(r.value) > MAX_OUTPUT for r in results)):
            continue
        programs = equivalent_programs(tree, rng, config.num_equivalents)
        source = sources[int(rng.integers(len(sources)))]
        answer = canonical if config.label == "canonical" else programs[int(rng.integers(len(programs)))]
        examples.append({
            "prompt": format_prompt(tree, source),
            "answer": answer,
            "equivalents": " ".join(programs),
            "ops": n_ops,
        })
    return examples


def make_splits(config: ProgramsConfig) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]} for `config` (see `draw_splits`)."""
    return config_splits(config, sample_problems, harder_hint="raise max_ops or add operators to ops",
                         key=problem_key)


def problem_key(example: dict) -> str:
    """What splits are held out by. A translation prompt (infix or prefix) determines its
    expression, so it is keyed by the canonical program (the first equivalent): a held-out
    expression is held out in every source language. An examples prompt may come from several
    expressions (x·2 and x+x), so it is keyed by itself. Either way no held-out prompt is in train."""
    prompt = example["prompt"]
    return prompt if ":" in prompt else example["equivalents"].split(" ")[0]


def unit_test_reward(language: Language = Language(), *, reward: str = "all_pass"):
    """A jittable device reward: the response's program against the answer's on ``TEST_INPUTS``.

    Both token programs run through ``run_tokens`` (a response without EOS crashes with NO_END);
    a test passes when both end OK with the same output. ``reward="all_pass"``: 1 iff every test
    passes; ``"fraction"``: the fraction passed. Returns
    ``(response_bt, mask_bt, answer_ba, answer_valid_ba) -> float32 [B]``.
    """
    if reward not in REWARDS:
        raise ValueError(f"unit_test_reward: reward={reward!r}; use one of {REWARDS}")
    inputs = jnp.asarray(TEST_INPUTS, jnp.int32)
    programs = jax.vmap(lambda tokens_t, valid_t: run_tokens(language, tokens_t, valid_t, inputs))

    def unit_tests(response_bt, mask_bt, answer_ba, answer_valid_ba):
        got_status, got_value, _ = programs(response_bt, mask_bt.astype(bool))
        ref_status, ref_value, _ = programs(answer_ba, answer_valid_ba.astype(bool))
        passed = (got_status == OK) & (ref_status == OK) & (got_value == ref_value)
        score = passed.all(axis=-1) if reward == "all_pass" else passed.mean(axis=-1)
        return score.astype(jnp.float32)

    unit_tests.__name__ = "unit_test_reward"
    return unit_tests


def host_unit_test_reward(completion: str, answer: str, *, reward: str = "all_pass",
                          limits: Limits = Limits()) -> float:
    """``unit_test_reward`` of one decoded completion (the text before EOS) on the host."""
    passed = [got.status == OK and ref.status == OK and got.value == ref.value
              for got, ref in ((run(completion, x, limits), run(answer, x, limits)) for x in TEST_INPUTS)]
    return float(all(passed)) if reward == "all_pass" else sum(passed) / len(passed)


class Programs(GeneratedSplits, tfds.core.GeneratorBasedBuilder):
    """TFDS builder for the programs task; features "prompt", "answer", "equivalents" (Text),
    "ops" (int32)."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.",
                     "2.0.0": "Translation: the prompt is the expression in a source language (infix by "
                              "default; prefix, or the old input/output examples); canonical labels; "
                              "held out by expression."}
    BUILDER_CONFIGS = [ProgramsConfig()]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "prompt": tfds.features.Text(), "answer": tfds.features.Text(),
                "equivalents": tfds.features.Text(), "ops": np.int32,
            }),
        )

    def make_splits(self, config):
        return make_splits(config)
