"""Character-level tokenizer for the synthetic tasks.

Default table (64 ids):

    ids  0-2    <pad> <bos> <eos>
    ids  3-12   0 1 2 3 4 5 6 7 8 9
    ids 13-22   + - * / = ( ) , : ?
    id  23      space
    ids 24-49   a b c ... z
    ids 50-63   . ! < > ^ % _ ' " # $ [ ] and newline

Text is encoded one id per character; a character outside the table is an error
rather than being mapped to an "unknown" id, so a task can never silently train on
text the model cannot see.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
NUM_SPECIAL = 3

DEFAULT_CHARS = (
    "0123456789"
    "+-*/=(),:?"
    " "
    "abcdefghijklmnopqrstuvwxyz"
    ".!<>^%_'\"#$[]\n"
)


@dataclasses.dataclass(frozen=True)
class CharTokenizer:
    """Maps each character of `chars` to one id; ids 0, 1, 2 are pad, bos, eos.

    `chars[i]` gets id `i + 3`, so `vocab_size == 3 + len(chars)` (64 by default).
    """

    chars: str = DEFAULT_CHARS
    _char_to_id: dict[str, int] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self):
        repeated = sorted({c for c in self.chars if self.chars.count(c) > 1})
        if repeated:
            raise ValueError(
                f"CharTokenizer: chars lists {repeated!r} more than once; "
                "give each character exactly once."
            )
        mapping = {c: i + NUM_SPECIAL for i, c in enumerate(self.chars)}
        object.__setattr__(self, "_char_to_id", mapping)

    @property
    def vocab_size(self) -> int:
        """Number of ids: the 3 special ids plus one per character."""
        return NUM_SPECIAL + len(self.chars)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of `text`, one per character, optionally with BOS first / EOS last."""
        ids = [BOS_ID] if bos else []
        for char in text:
            token = self._char_to_id.get(char)
            if token is None:
                raise ValueError(
                    f"CharTokenizer.encode: character {char!r} in {text!r} is not in "
                    f"the vocabulary; allowed characters are {self.chars!r}."
                )
            ids.append(token)
        if eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids` up to (not including) the first EOS; pad and BOS are skipped."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(
                f"CharTokenizer.decode: expected a 1-D sequence of ids, got shape "
                f"{ids.shape}; use decode_batch for [batch, time] arrays."
            )
        chars = []
        for token in ids.tolist():
            if token == EOS_ID:
                break
            if token in (PAD_ID, BOS_ID):
                continue
            if not NUM_SPECIAL <= token < self.vocab_size:
                raise ValueError(
                    f"CharTokenizer.decode: id {token} is outside the vocabulary "
                    f"[0, {self.vocab_size})."
                )
            chars.append(self.chars[token - NUM_SPECIAL])
        return "".join(chars)

    def decode_batch(self, ids_bt: Sequence[Sequence[int]]) -> list[str]:
        """`decode` applied to each row of a [batch, time] array."""
        ids_bt = np.asarray(ids_bt)
        if ids_bt.ndim != 2:
            raise ValueError(
                f"CharTokenizer.decode_batch: expected a [batch, time] array, got "
                f"shape {ids_bt.shape}; use decode for a single sequence."
            )
        return [self.decode(row) for row in ids_bt]
