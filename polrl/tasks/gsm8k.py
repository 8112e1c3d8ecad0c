"""GSM8K (Cobbe et al. 2021, arXiv 2110.14168): grade-school math word problems.

A record is ``{"question": str, "answer": str}``, the answer being a worked solution whose last
line is ``#### <number>`` (the format of openai/grade-school-math; TFDS ``gsm8k`` stores the same
two text features plus ``annotation`` / ``short_answer``). Records come either from TFDS
(``prepare_tfds`` once, then ``read_tfds_split``: array_record files, no TensorFlow) or from a
directory holding ``train.jsonl`` / ``test.jsonl`` in that format (``read_jsonl_split``).

The trainer sees one example dict per record (``gsm8k_examples``)::

    prompt    the question, formatted (``format_prompt``): plain text or the model's chat template
    answer    the reference number (``reference_answer``: the number after the last ``####``)
    question  the question as stored
    solution  the worked solution as stored

and scores a completion with ``gsm8k_reward`` (numeric exact match of ``completion_answer``).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from polrl.tasks.data import decode_example
from polrl.tasks.rewards import extract_number, numeric_match

ANSWER_MARK = "####"
# Qwen2.5-Math's chain-of-thought instruction; completion_answer also reads "#### N" answers.
DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
PROMPT_FORMATS = ("chat", "plain")
SPLITS = ("train", "test")
# "\boxed{...}" with at most one level of nested braces inside (e.g. "\boxed{\frac{3}{4}}").
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")


def reference_answer(solution: str) -> str:
    """The reference number of a GSM8K solution: ``extract_number`` of the text after its last
    ``####`` (thousands commas removed), e.g. ``"3+4=7\\n#### 7"`` → ``"7"``, ``"#### 2,000"`` →
    ``"2000"``. A solution without ``####`` or without a number after it is a data error
    (ValueError)."""
    _, mark, tail = solution.rpartition(ANSWER_MARK)
    number = extract_number(tail) if mark else None
    if number is None:
        raise ValueError(
            f"reference_answer: solution {solution[-80:]!r} does not end in "
            f"'{ANSWER_MARK} <number>'; GSM8K records need that final line.")
    return number


def completion_answer(completion: str) -> str | None:
    """The number a completion answers with, or None.

    The marked span is, in order of precedence: the content of the last ``\\boxed{…}``; else the
    line after the last ``####``; else the whole completion. The answer is the last number in
    that span (``extract_number``: thousands commas removed, "-" as a sign only where it cannot
    be a subtraction). E.g. ``"… so \\boxed{1,200} pens"`` → ``"1200"``,
    ``"5+6=11\\n#### 11 apples"`` → ``"11"``, ``"It is 42."`` → ``"42"``.
    INFERRED: the last number of the span rather than the first (openai's grader takes the
    number right after ``####``); they differ only when the span holds several numbers.
    """
    boxed = _BOXED.findall(completion)
    if boxed:
        return extract_number(boxed[-1])
    _, mark, tail = completion.rpartition(ANSWER_MARK)
    if mark:
        return extract_number(tail.split("\n", 1)[0])
    return extract_number(completion)


def gsm8k_reward(completion: str, answer: str) -> float:
    """1.0 iff ``completion_answer(completion)`` equals ``answer`` as a decimal
    (``numeric_match``: "42.0" matches "42"), else 0.0 (also when the completion has no
    number)."""
    got = completion_answer(completion)
    return 0.0 if got is None else numeric_match(got, answer)


def read_chat_template(path: str) -> str | None:
    """The Jinja chat template of a Hugging Face checkpoint directory, or None if it has none.

    Read from ``chat_template.jinja`` (transformers ≥ 4.47 writes it there) or the
    ``chat_template`` entry of ``tokenizer_config.json``; when that entry is a list of named
    templates, the one named ``default``.
    """
    jinja_file = os.path.join(path, "chat_template.jinja")
    if os.path.exists(jinja_file):
        with open(jinja_file, encoding="utf-8") as f:
            return f.read()
    config_file = os.path.join(path, "tokenizer_config.json")
    if not os.path.exists(config_file):
        return None
    with open(config_file, encoding="utf-8") as f:
        template = json.load(f).get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("default")
    return template


def render_chat(template: str, messages: Sequence[dict]) -> str:
    """``template`` (a Hugging Face chat template) rendered for ``messages`` with the generation
    prompt appended, as ``tokenizer.apply_chat_template(..., add_generation_prompt=True,
    tokenize=False)`` does: a sandboxed Jinja environment with ``trim_blocks`` and
    ``lstrip_blocks`` and a ``raise_exception`` global; other special-token variables are
    undefined (they render as "").

    ``bos_token`` renders as "" because ``encode_prompts`` prepends BOS itself (a template that
    starts with ``{{ bos_token }}``, e.g. Llama 3's, would otherwise give two).
    """
    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=list(messages), add_generation_prompt=True, bos_token="")


def format_prompt(question: str, *, instruction: str = DEFAULT_INSTRUCTION,
                  chat_template: str | None = None) -> str:
    """The prompt for one question.

    Without a chat template (plain): ``"Question: {question}\\n{instruction}\\nAnswer:"``.
    With one: the template rendered (``render_chat``) for a single user message
    ``"{question}\\n{instruction}"``, ending with the assistant's generation prompt.
    """
    if chat_template is None:
        return f"Question: {question}\n{instruction}\nAnswer:"
    message = {"role": "user", "content": f"{question}\n{instruction}"}
    return render_chat(chat_template, [message])


def read_jsonl_split(directory: str, split: str) -> list[dict]:
    """The records of ``directory/{split}.jsonl`` (one JSON object per line with "question" and
    "answer": openai/grade-school-math's ``grade_school_math/data`` layout)."""
    file = os.path.join(directory, f"{split}.jsonl")
    if not os.path.exists(file):
        raise ValueError(f"gsm8k: {file!r} does not exist; task.source must be 'tfds' or a "
                         f"directory holding {[s + '.jsonl' for s in SPLITS]}.")
    with open(file, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def prepare_tfds(data_dir: str) -> None:
    """Downloads GSM8K (from openai/grade-school-math on GitHub) and writes TFDS ``gsm8k`` under
    ``data_dir`` as array_record files; run it once, on a machine with network access::

        python -c "from polrl.tasks.gsm8k import prepare_tfds; prepare_tfds('DATA_DIR')"

    Needs no TensorFlow (the ``tfds build`` command line imports TensorFlow; where it is
    installed, ``tfds build gsm8k --data_dir=DATA_DIR --file_format=array_record`` is the same).
    """
    from tensorflow_datasets.text.gsm8k import Gsm8k  # importing registers the builder

    Gsm8k(data_dir=data_dir).download_and_prepare(file_format="array_record")


def read_tfds_split(split: str, *, data_dir: str):
    """A random-access data source over the TFDS ``gsm8k`` split prepared as array_record under
    ``data_dir`` (``prepare_tfds``); text features come back as bytes. Nothing is downloaded
    here, and nothing needs TensorFlow."""
    from tensorflow_datasets.text.gsm8k import Gsm8k

    try:
        return Gsm8k(data_dir=data_dir).as_data_source(split)
    except NotImplementedError as e:  # TFDS's answer for missing data and for TFRecord data
        raise ValueError(
            f"gsm8k: no array_record copy of TFDS gsm8k under data_dir={data_dir!r} ({e}). "
            f"Prepare it once, on a machine with network access: python -c \"from "
            f"polrl.tasks.gsm8k import prepare_tfds; prepare_tfds('{data_dir}')\" "
            f"(task.data_dir / $POLRL_DATA_DIR pick the directory).") from e


def gsm8k_examples(records: Sequence[dict], prompt: Callable[[str], str], *,
                   where: str) -> list[dict]:
    """Example dicts (see the module docstring) of ``records``; ``prompt`` formats a question.
    A record whose solution has no ``#### <number>`` raises a ValueError naming ``where`` and
    the record's index."""
    examples = []
    for i in range(len(records)):
        record = decode_example(records[i])
        try:
            answer = reference_answer(record["answer"])
        except ValueError as e:
            raise ValueError(f"gsm8k {where} record {i}: {e}") from e
        examples.append(dict(prompt=prompt(record["question"]), answer=answer,
                             question=record["question"], solution=record["answer"]))
    return examples


def prompt_formatter(prompt_format: str, *, instruction: str = DEFAULT_INSTRUCTION,
                     chat_template_dir: str = "") -> Callable[[str], str]:
    """``question -> prompt`` (``format_prompt``): ``prompt_format="plain"``, or ``"chat"`` with
    the chat template of the checkpoint in ``chat_template_dir`` (``read_chat_template``)."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"gsm8k: task.prompt_format={prompt_format!r}; use one of {PROMPT_FORMATS}.")
    if prompt_format == "plain":
        return lambda question: format_prompt(question, instruction=instruction)
    if not chat_template_dir:
        raise ValueError("gsm8k: task.prompt_format='chat' needs task.chat_template_dir, the "
                         "checkpoint directory holding the chat template (experiments tie it to "
                         "model.hf_path); or use task.prompt_format='plain'.")
    template = read_chat_template(chat_template_dir)
    if template is None:
        raise ValueError(f"gsm8k: {chat_template_dir!r} has no chat template (chat_template.jinja "
                         "or tokenizer_config.json's chat_template); use task.prompt_format='plain'.")
    return lambda question: format_prompt(question, instruction=instruction, chat_template=template)


def gsm8k_splits(source: str, prompt: Callable[[str], str], *, data_dir: str) -> dict[str, list[dict]]:
    """{"train": examples, "test": examples} (``gsm8k_examples``) from ``source``: "tfds" (TFDS
    ``gsm8k`` under ``data_dir``, ``read_tfds_split``) or a directory of ``train.jsonl`` /
    ``test.jsonl`` (``read_jsonl_split``)."""
    if source == "tfds":
        records = {split: read_tfds_split(split, data_dir=data_dir) for split in SPLITS}
    else:
        records = {split: read_jsonl_split(source, split) for split in SPLITS}
    return {split: gsm8k_examples(rows, prompt, where=f"{source}:{split}")
            for split, rows in records.items()}
