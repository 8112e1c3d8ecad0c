"""Verifiable tasks: tokenizer, TFDS datasets, rewards, task objects and batching."""
from polrl.tasks.arithmetic import Arithmetic, ArithmeticConfig
from polrl.tasks.chain import Chain, ChainConfig, final_answer_reward
from polrl.tasks.countdown import Countdown, CountdownConfig
from polrl.tasks.multiplication import Multiplication, MultiplicationConfig
from polrl.tasks.data import (
    BatchIterator,
    decode_example,
    encode_answers,
    encode_prompts,
    load_split,
    task_batch,
)
from polrl.tasks.registry import (
    Task,
    arithmetic_task,
    chain_task,
    countdown_task,
    get_task,
    gsm8k_task,
    multiplication_task,
    task_names,
)
from polrl.tasks.rewards import (
    check_rewards,
    countdown_reward,
    exact_match,
    extract_number,
    format_reward,
    numeric_match,
    parse_expression,
    token_exact_match,
)
from polrl.tasks.tokenizer import CharTokenizer

__all__ = [
    "Arithmetic",
    "ArithmeticConfig",
    "BatchIterator",
    "Chain",
    "ChainConfig",
    "CharTokenizer",
    "Countdown",
    "CountdownConfig",
    "Multiplication",
    "MultiplicationConfig",
    "Task",
    "arithmetic_task",
    "chain_task",
    "check_rewards",
    "countdown_reward",
    "countdown_task",
    "decode_example",
    "encode_answers",
    "encode_prompts",
    "exact_match",
    "extract_number",
    "final_answer_reward",
    "format_reward",
    "get_task",
    "gsm8k_task",
    "load_split",
    "multiplication_task",
    "numeric_match",
    "parse_expression",
    "task_batch",
    "task_names",
    "token_exact_match",
]
