"""Offline preference data from a user's JSONL file or a TFDS dataset, checked row by row.

Two row schemas, one per source:

* paired:   ``{"prompt": str, "chosen": str, "rejected": str}`` — the chosen completion is
  preferred to the rejected one (DPO, SimPO, ORPO, IPO, … and the Bradley–Terry reward model);
* unpaired: ``{"prompt": str, "completion": str, "label": bool}`` — the completion is desirable
  (``true``) or not (KTO).

A JSONL file holds one JSON object per line (blank lines are skipped); a TFDS dataset has the
same features (``Text`` for the strings, a bool ``Scalar`` for the label) and is read as a
random-access data source (``tfds.data_source``, no TensorFlow). Every row is checked before
training: a bad row is a one-line ``ValueError`` naming the source, the line (or example index),
the field and the fix — a missing field, a wrong type, empty text, a row mixing both schemas,
a row of the other schema than the source's first row, text the tokenizer cannot encode, or
text longer than the run's widths (prompt with BOS ≤ ``max_prompt_len``, completion with EOS ≤
``max_response_len``).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import tensorflow_datasets as tfds

from polrl.tasks.data import decode_example

PAIRED = ("prompt", "chosen", "rejected")
UNPAIRED = ("prompt", "completion", "label")
_PAIRED_ONLY, _UNPAIRED_ONLY = {"chosen", "rejected"}, {"completion", "label"}
_NAMES = {PAIRED: ("a paired row", "paired rows"), UNPAIRED: ("an unpaired row", "unpaired rows")}


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a row must fit: the run's tokenizer and widths (in tokens).

    Attributes:
      tokenizer: encodes the texts (``encode(text, bos=…, eos=…)``).
      max_prompt_len: longest prompt, BOS included (the task's ``max_prompt_len``).
      max_response_len: longest completion, EOS included (the task's ``max_answer_len``).
    """

    tokenizer: Any
    max_prompt_len: int
    max_response_len: int


def _kind(row: dict, where: str) -> tuple[str, ...]:
    """The row's schema (``PAIRED`` or ``UNPAIRED``) from the fields it has."""
    paired, unpaired = _PAIRED_ONLY & set(row), _UNPAIRED_ONLY & set(row)
    if paired and unpaired:
        raise ValueError(f"{where}: the row mixes paired fields {sorted(paired)} with unpaired fields "
                         f"{sorted(unpaired)}; write either prompt/chosen/rejected or prompt/completion/label")
    return UNPAIRED if unpaired else PAIRED


def _check_text(tokenizer, text: str, field: str, where: str, *, bos: bool, limit: int, limit_name: str) -> None:
    if not text.strip():
        raise ValueError(f"{where}: field {field!r} is empty; give it text or drop the row")
    bad = next((c for c in text if not _encodes(tokenizer, c)), None)
    if bad is not None:
        raise ValueError(f"{where}: field {field!r} has the character {bad!r}, which the tokenizer cannot encode; "
                         f"remove it or use a model whose tokenizer has it")
    n = len(tokenizer.encode(text, bos=bos, eos=not bos))
    if n > limit:
        raise ValueError(f"{where}: field {field!r} is {n} tokens with {'BOS' if bos else 'EOS'}, longer than the "
                         f"{limit} the model sees in this run ({limit_name}); shorten it or drop the row")


def _encodes(tokenizer, char: str) -> bool:
    try:
        tokenizer.encode(char)
    except ValueError:
        return False
    return True


def check_row(row: Any, where: str, limits: Limits, kind: tuple[str, ...] | None = None) -> dict:
    """The row's schema fields (text as ``str``, label as ``bool``) after every check; ``kind``
    (the source's schema, from its first row) must match when given. Errors start with ``where``."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object with prompt/chosen/rejected or prompt/completion/label, "
                         f"got {type(row).__name__}")
    row_kind = _kind(row, where)
    if kind is not None and row_kind != kind:
        raise ValueError(f"{where}: {_NAMES[row_kind][0]} in a source of {_NAMES[kind][1]}; keep one schema per file "
                         f"or dataset")
    for field in row_kind:
        if field not in row:
            raise ValueError(f"{where}: field {field!r} is missing; {_NAMES[row_kind][0]} needs {', '.join(row_kind)}")
    out = {}
    for field in row_kind:
        value = row[field]
        if field == "label":
            if not isinstance(value, bool):
                raise ValueError(f"{where}: field 'label' is {type(value).__name__} {value!r}, expected a bool; "
                                 f"write true (desirable) or false")
        elif not isinstance(value, str):
            raise ValueError(f"{where}: field {field!r} is {type(value).__name__} {value!r}, expected a string; "
                             f"write the text in quotes")
        else:
            prompt = field == "prompt"
            _check_text(limits.tokenizer, value, field, where, bos=prompt,
                        limit=limits.max_prompt_len if prompt else limits.max_response_len,
                        limit_name="the task's max_prompt_len" if prompt else "the task's max_answer_len")
        out[field] = value
    return out


def check_rows(rows, source: str, limits: Limits, *, where=lambda i: f"example {i}") -> list[dict]:
    """Every row checked (``check_row``), all of the first row's schema; ``where(i)`` locates row i."""
    out, kind = [], None
    for i, row in rows:
        checked = check_row(row, f"{source}: {where(i)}", limits, kind)
        kind = kind or tuple(checked)
        out.append(checked)
    if not out:
        raise ValueError(f"{source}: no rows; give at least one preference row")
    return out


def load_jsonl(path: str, limits: Limits) -> list[dict]:
    """The rows of the JSONL file at ``path`` (one JSON object per line, blank lines skipped)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise ValueError(f"{path}: cannot read the preference file ({e.strerror}); check pairs.path") from None

    def parsed():
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {number}: not valid JSON ({e.msg} at column {e.colno}); write one "
                                 f"JSON object per line") from None

    return check_rows(parsed(), path, limits, where=lambda n: f"line {n}")


def load_tfds(name: str, split: str, limits: Limits, *, data_dir: str | None = None) -> list[dict]:
    """The rows of TFDS dataset ``name``'s ``split`` (features as a JSONL row's), read as a data
    source (``tfds.data_source``); text features are decoded from UTF-8, a bool label to ``bool``."""
    source = tfds.data_source(name, split=split, data_dir=data_dir or None)

    def decoded():
        for i in range(len(source)):
            yield i, decode_example(source[i])

    return check_rows(decoded(), f"tfds:{name}[{split}]", limits)


def as_examples(rows: list[dict]) -> list[dict]:
    """The rows as examples of the trainer's data stream: each also carries ``answer``, the
    chosen (paired) or the completion (unpaired) text, which the batching encodes with the prompt."""
    return [{**row, "answer": row["chosen"] if "chosen" in row else row["completion"]} for row in rows]
