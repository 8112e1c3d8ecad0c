"""`Task`: everything a trainer needs about one task; factories and `get_task`.

A factory named `<name>_task` in this module makes the task called `<name>`;
`get_task(name, **kwargs)` finds it by that attribute name.
"""
from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable, Sequence

import jax
import numpy as np

from polrl.tasks.arithmetic import Arithmetic, ArithmeticConfig
from polrl.tasks.chain import Chain, ChainConfig, final_answer, final_answer_reward, MARKER, STEP_SEPARATOR
from polrl.tasks.countdown import Countdown, CountdownConfig
from polrl.tasks.data import decode_example, load_split
from polrl.tasks.gsm8k import DEFAULT_INSTRUCTION, gsm8k_reward, gsm8k_splits, prompt_formatter
from polrl.tasks.multiplication import Multiplication, MultiplicationConfig
from polrl.tasks.programs import MAX_PROGRAM_TOKENS, Programs, ProgramsConfig, host_unit_test_reward, unit_test_reward
from polrl.tasks.rewards import countdown_reward, exact_match, token_exact_match
from polrl.tasks.target_says import GOAL_CHARS, TURN_CHARS, TargetSays, TargetSaysConfig, attack_text_reward
from polrl.tasks.tokenizer import CharTokenizer

HostReward = Callable[[list[str], list[dict]], np.ndarray]
DeviceReward = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Task:
    """One verifiable task.

    Attributes:
      name: the task's name (what `get_task` takes).
      tokenizer: encodes prompts/answers and decodes completions.
      max_prompt_len: longest prompt in tokens, BOS included.
      max_answer_len: longest reference answer in tokens, EOS included.
      train, test: random-access data sources of example dicts.
      host_reward: (completions, examples) -> float32 [B]; completions are decoded
        strings (text before EOS), examples the dicts they answer.
      device_reward: optional jittable
        (response_bt, mask_bt, answer_ba, answer_valid_ba) -> float32 [B].
      step_separator: the text that ends one reasoning step of a response (process rewards and
        step-level search split responses after it; the last step ends at EOS), or None for a
        task whose responses have no steps.
      answer_marker: the text after which a response states its final answer (what answer votes
        compare), or None when the whole response is the answer.
    """

    name: str
    tokenizer: CharTokenizer
    max_prompt_len: int
    max_answer_len: int
    train: Sequence[dict]
    test: Sequence[dict]
    host_reward: HostReward
    device_reward: DeviceReward | None = None
    step_separator: str | None = None
    answer_marker: str | None = None


def _check_lengths(completions: list[str], examples: list[dict], source: str):
    if len(completions) != len(examples):
        raise ValueError(
            f"{source}: got {len(completions)} completions for {len(examples)} "
            "examples; pass one completion per example."
        )


def arithmetic_host_reward(completions: list[str], examples: list[dict]) -> np.ndarray:
    """float32 [B]: `exact_match(completion, example["answer"])` per row."""
    _check_lengths(completions, examples, "arithmetic_host_reward")
    answers = [decode_example(e)["answer"] for e in examples]
    return np.array([exact_match(c, a) for c, a in zip(completions, answers)], np.float32)


def countdown_host_reward(completions: list[str], examples: list[dict]) -> np.ndarray:
    """float32 [B]: `countdown_reward(completion, numbers, target)` per row."""
    _check_lengths(completions, examples, "countdown_host_reward")
    examples = [decode_example(e) for e in examples]
    return np.array(
        [
            countdown_reward(c, e["numbers"], e["target"])
            for c, e in zip(completions, examples)
        ],
        np.float32,
    )


def arithmetic_task(
    *,
    data_dir: str,
    num_digits: int = 2,
    num_operands: int = 2,
    ops: str = "+",
    num_train: int = 20_000,
    num_test: int = 1_000,
    seed: int = 0,
    reverse_answer: bool = False,
) -> Task:
    """The arithmetic task (see `polrl.tasks.arithmetic`), data under `data_dir`."""
    knobs = dict(
        num_digits=num_digits,
        num_operands=num_operands,
        ops=ops,
        num_train=num_train,
        num_test=num_test,
        seed=seed,
        reverse_answer=reverse_answer,
    )
    config = ArithmeticConfig(**knobs)
    return Task(
        name="arithmetic",
        tokenizer=CharTokenizer(),
        max_prompt_len=1 + config.max_prompt_chars,
        max_answer_len=config.max_answer_chars + 1,
        train=load_split(Arithmetic, "train", data_dir=data_dir, **knobs),
        test=load_split(Arithmetic, "test", data_dir=data_dir, **knobs),
        host_reward=arithmetic_host_reward,
        device_reward=token_exact_match,
    )


def chain_host_reward(completions: list[str], examples: list[dict]) -> np.ndarray:
    """float32 [B]: 1 iff the completion's final answer (after its last "#") equals the
    example's (`polrl.tasks.chain.final_answer`)."""
    _check_lengths(completions, examples, "chain_host_reward")
    answers = [final_answer(decode_example(e)["answer"]) for e in examples]
    return np.array([float(final_answer(c) == a) for c, a in zip(completions, answers)], np.float32)


def chain_task(
    *,
    data_dir: str,
    min_terms: int = 3,
    max_terms: int = 10,
    ops: str = "+",
    num_train: int = 20_000,
    num_test: int = 1_000,
    seed: int = 0,
) -> Task:
    """The chain task (see `polrl.tasks.chain`): a scratchpad of running totals, then the
    final answer; rewarded on the final answer only, on device (`final_answer_reward`)."""
    knobs = dict(min_terms=min_terms, max_terms=max_terms, ops=ops, num_train=num_train,
                 num_test=num_test, seed=seed)
    config = ChainConfig(**knobs)
    tokenizer = CharTokenizer()
    return Task(
        name="chain",
        tokenizer=tokenizer,
        max_prompt_len=1 + config.max_prompt_chars,
        max_answer_len=config.max_answer_chars + 1,
        train=load_split(Chain, "train", data_dir=data_dir, **knobs),
        test=load_split(Chain, "test", data_dir=data_dir, **knobs),
        host_reward=chain_host_reward,
        device_reward=final_answer_reward(tokenizer.encode(MARKER)[0], tokenizer.eos_id),
        step_separator=STEP_SEPARATOR,
        answer_marker=MARKER,
    )


def countdown_task(
    *,
    data_dir: str,
    min_numbers: int = 3,
    max_numbers: int = 4,
    max_number: int = 25,
    max_target: int = 100,
    num_train: int = 20_000,
    num_test: int = 1_000,
    seed: int = 0,
) -> Task:
    """The countdown task (see `polrl.tasks.countdown`), data under `data_dir`.

    There is no device reward: many expressions are correct, so rewards are
    checked on the host with `countdown_reward`.
    """
    knobs = dict(
        min_numbers=min_numbers,
        max_numbers=max_numbers,
        max_number=max_number,
        max_target=max_target,
        num_train=num_train,
        num_test=num_test,
        seed=seed,
    )
    config = CountdownConfig(**knobs)
    return Task(
        name="countdown",
        tokenizer=CharTokenizer(),
        max_prompt_len=1 + config.max_prompt_chars,
        max_answer_len=config.max_answer_chars + 1,
        train=load_split(Countdown, "train", data_dir=data_dir, **knobs),
        test=load_split(Countdown, "test", data_dir=data_dir, **knobs),
        host_reward=countdown_host_reward,
    )


def multiplication_host_reward(completions: list[str], examples: list[dict]) -> np.ndarray:
    """float32 [B]: `exact_match(completion, example["target"])` per row (the product)."""
    _check_lengths(completions, examples, "multiplication_host_reward")
    targets = [decode_example(e)["target"] for e in examples]
    return np.array([exact_match(c, t) for c, t in zip(completions, targets)], np.float32)


def multiplication_task(
    *,
    data_dir: str,
    num_digits: int = 3,
    num_train: int = 20_000,
    num_test: int = 1_000,
    seed: int = 0,
    tool_demonstrations: bool = False,
) -> Task:
    """The multiplication task (see `polrl.tasks.multiplication`), data under `data_dir`.

    The answers (what SFT imitates) are the products, or with `tool_demonstrations` the
    calculator transcripts of the same problems (`polrl.envs.calculator`). The verifier
    compares a completion with the product; a device reward exists only for direct answers
    (there answer = product, `token_exact_match`).
    """
    knobs = dict(num_digits=num_digits, num_train=num_train, num_test=num_test, seed=seed,
                 tool_demonstrations=tool_demonstrations)
    config = MultiplicationConfig(**knobs)
    return Task(
        name="multiplication",
        tokenizer=CharTokenizer(),
        max_prompt_len=1 + config.max_prompt_chars,
        max_answer_len=config.max_answer_chars + 1,
        train=load_split(Multiplication, "train", data_dir=data_dir, **knobs),
        test=load_split(Multiplication, "test", data_dir=data_dir, **knobs),
        host_reward=multiplication_host_reward,
        device_reward=None if tool_demonstrations else token_exact_match,
    )


def gsm8k_host_reward(completions: list[str], examples: list[dict]) -> np.ndarray:
    """float32 [B]: `gsm8k_reward(completion, example["answer"])` per row."""
    _check_lengths(completions, examples, "gsm8k_host_reward")
    answers = [decode_example(e)["answer"] for e in examples]
    return np.array([gsm8k_reward(c, a) for c, a in zip(completions, answers)], np.float32)


def gsm8k_task(
    *,
    data_dir: str,
    tokenizer=None,
    source: str = "tfds",
    prompt_format: str = "chat",
    chat_template_dir: str = "",
    instruction: str = DEFAULT_INSTRUCTION,
) -> Task:
    """GSM8K (see `polrl.tasks.gsm8k`) with the tokenizer of the model being trained.

    `source`: "tfds" (TFDS gsm8k prepared as array_record under `data_dir`) or a directory of
    train.jsonl / test.jsonl. Prompts: `prompt_format` "chat" (the chat template of the
    checkpoint in `chat_template_dir`) or "plain"; `instruction` follows the question.
    `max_prompt_len` / `max_answer_len` are the longest prompt (BOS included) / reference
    number (EOS included) over both splits, in tokens. Host reward only (`gsm8k_reward`).
    """
    if tokenizer is None:
        raise ValueError(
            "gsm8k_task: GSM8K needs the tokenizer of a pretrained model; set model.hf_path to a "
            "local Hugging Face checkpoint (e.g. Qwen2.5-0.5B-Instruct) or pass tokenizer=."
        )
    prompt = prompt_formatter(prompt_format, instruction=instruction, chat_template_dir=chat_template_dir)
    splits = gsm8k_splits(source, prompt, data_dir=data_dir)
    examples = splits["train"] + splits["test"]
    return Task(
        name="gsm8k",
        tokenizer=tokenizer,
        max_prompt_len=max(len(tokenizer.encode(e["prompt"], bos=True)) for e in examples),
        max_answer_len=max(len(tokenizer.encode(e["answer"], eos=True)) for e in examples),
        train=splits["train"],
        test=splits["test"],
        host_reward=gsm8k_host_reward,
    )


def programs_host_reward(reward: str):
    """``(completions, examples) -> float32 [B]``: `host_unit_test_reward` of each completion
    against its example's answer."""

    def score(completions: list[str], examples: list[dict]) -> np.ndarray:
        _check_lengths(completions, examples, "programs_host_reward")
        answers = [decode_example(e)["answer"] for e in examples]
        return np.array([host_unit_test_reward(c, a, reward=reward) for c, a in zip(completions, answers)], np.float32)

    return score


def programs_task(
    *,
    data_dir: str,
    min_ops: int = 1,
    max_ops: int = 4,
    ops: str = "+-*",
    source: str = "infix",
    label: str = "canonical",
    num_equivalents: int = 4,
    num_train: int = 20_000,
    num_test: int = 1_000,
    seed: int = 0,
    reward: str = "all_pass",
) -> Task:
    """The programs task (see `polrl.tasks.programs`): an expression given in ``source`` (infix,
    prefix, or input/output examples) translated into the stack language, rewarded on device by
    running it on hidden unit tests (`unit_test_reward`; ``reward`` "all_pass" or "fraction")."""
    knobs = dict(min_ops=min_ops, max_ops=max_ops, ops=ops, source=source, label=label,
                 num_equivalents=num_equivalents, num_train=num_train, num_test=num_test, seed=seed)
    config = ProgramsConfig(**knobs)
    device_reward = unit_test_reward(reward=reward)  # checks ``reward`` before any data is built
    return Task(
        name="programs",
        tokenizer=CharTokenizer(),
        max_prompt_len=1 + config.max_prompt_chars,
        max_answer_len=MAX_PROGRAM_TOKENS + 1,
        train=load_split(Programs, "train", data_dir=data_dir, **knobs),
        test=load_split(Programs, "test", data_dir=data_dir, **knobs),
        host_reward=programs_host_reward(reward),
        device_reward=device_reward,
    )


def target_says_host_reward(completions: list[str], examples: list[dict]) -> np.ndarray:
    """float32 [B]: `attack_text_reward(completion, example["prompt"])` per row."""
    _check_lengths(completions, examples, "target_says_host_reward")
    prompts = [decode_example(e)["prompt"] for e in examples]
    return np.array([attack_text_reward(c, p) for c, p in zip(completions, prompts)], np.float32)


def target_says_task(*, data_dir: str, num_train: int = 5_000, num_test: int = 500, test_fraction: float = 0.2,
                     seed: int = 0) -> Task:
    """The target-says task (see `polrl.tasks.target_says`): goals for an attacker that makes a frozen
    arithmetic model say a number; the dialogue rules are `target_says.attack_rules`."""
    knobs = dict(num_train=num_train, num_test=num_test, test_fraction=test_fraction, seed=seed)
    TargetSaysConfig(**knobs)  # checks the knobs before any data is built
    return Task(
        name="target_says",
        tokenizer=CharTokenizer(),
        max_prompt_len=1 + GOAL_CHARS,
        max_answer_len=TURN_CHARS + 1,
        train=load_split(TargetSays, "train", data_dir=data_dir, **knobs),
        test=load_split(TargetSays, "test", data_dir=data_dir, **knobs),
        host_reward=target_says_host_reward,
    )


def task_names() -> list[str]:
    """Names `get_task` accepts: `<name>` for each `<name>_task` factory here."""
    module = sys.modules[__name__]
    return sorted(
        attr.removesuffix("_task")
        for attr, value in vars(module).items()
        if attr.endswith("_task") and attr != "get_task" and inspect.isfunction(value)
    )


def get_task(name: str, **kwargs) -> Task:
    """`<name>_task(**kwargs)`, e.g. `get_task("arithmetic", data_dir=d, ops="+-")`."""
    if name not in task_names():
        raise ValueError(
            f"get_task: unknown task {name!r}; valid names are {task_names()}."
        )
    return getattr(sys.modules[__name__], f"{name}_task")(**kwargs)
