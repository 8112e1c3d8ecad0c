"""A Hugging Face ``tokenizer.json`` behind the interface of :class:`polrl.tasks.tokenizer.CharTokenizer`.

``encode(text, bos=, eos=)``, ``decode(ids)`` (up to the first EOS, pads and BOS skipped),
``decode_batch``, ``vocab_size``, ``pad_id``, ``bos_id``, ``eos_id``, so the sampler, the
rollout builders and the reward functions use an HF tokenizer as they use the task tokenizer.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

import numpy as np
import tokenizers


def _token_text(entry) -> str | None:
    """The token string of a ``tokenizer_config.json`` entry: a str or an AddedToken dict."""
    if isinstance(entry, dict):
        return entry.get("content")
    return entry


def _first_id(value) -> int | None:
    """An id from ``config.json``: an int, a list of ints (the first one), or None."""
    if isinstance(value, list):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class HFTokenizer:
    """Wraps a ``tokenizers.Tokenizer`` (the fast tokenizer of a ``tokenizer.json``).

    ``encode`` tokenizes without the tokenizer's own post-processor (no special tokens are
    added implicitly): BOS / EOS are added only when asked, as with CharTokenizer.
    ``vocab_size`` counts the added tokens too; a model's embedding may be larger (padded).
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, *, eos_id: int, pad_id: int,
                 bos_id: int | None = None, files: dict[str, dict] | None = None):
        for field, value in (("eos_id", eos_id), ("pad_id", pad_id), ("bos_id", bos_id)):
            if value is not None and not 0 <= value < tokenizer.get_vocab_size(True):
                raise ValueError(f"HFTokenizer: {field}={value} is outside the vocabulary "
                                 f"[0, {tokenizer.get_vocab_size(True)}).")
        self.tokenizer = tokenizer
        self._eos_id, self._pad_id, self._bos_id = eos_id, pad_id, bos_id
        self._files = dict(files or {})

    @classmethod
    def from_dir(cls, path: str) -> "HFTokenizer":
        """Loads ``path/tokenizer.json``; special tokens from ``tokenizer_config.json`` (token
        strings), else ``config.json`` (``*_token_id``).

        INFERRED: a checkpoint without a pad token (Llama) pads with EOS, the usual choice;
        the pad id is never trained on (masked), and ``decode`` stops at the first EOS anyway.
        """
        file = os.path.join(path, "tokenizer.json")
        if not os.path.exists(file):
            raise ValueError(f"HFTokenizer.from_dir: {file!r} does not exist; only fast "
                             "tokenizers (tokenizer.json) are supported.")
        tokenizer = tokenizers.Tokenizer.from_file(file)
        tok_config = _read_json(os.path.join(path, "tokenizer_config.json"))
        model_config = _read_json(os.path.join(path, "config.json"))

        def special(name: str) -> int | None:
            text = _token_text(tok_config.get(f"{name}_token"))
            token_id = tokenizer.token_to_id(text) if text is not None else None
            return token_id if token_id is not None else _first_id(
                model_config.get(f"{name}_token_id"))

        eos_id = special("eos")
        if eos_id is None:
            raise ValueError(f"HFTokenizer.from_dir: no EOS token in {path!r}: set eos_token in "
                             "tokenizer_config.json or eos_token_id in config.json.")
        pad_id = special("pad")
        files = {"tokenizer_config.json": tok_config} if tok_config else {}
        return cls(tokenizer, eos_id=eos_id, pad_id=eos_id if pad_id is None else pad_id,
                   bos_id=special("bos"), files=files)

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def bos_id(self) -> int | None:
        return self._bos_id

    @property
    def eos_id(self) -> int:
        return self._eos_id

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``text``, optionally with BOS first / EOS last."""
        if bos and self._bos_id is None:
            raise ValueError("HFTokenizer.encode(bos=True): this tokenizer has no BOS token.")
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ([self._bos_id] if bos else []) + ids + ([self._eos_id] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` up to (not including) the first EOS; special tokens are skipped."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"HFTokenizer.decode: expected a 1-D sequence of ids, got shape "
                             f"{ids.shape}; use decode_batch for [batch, time] arrays.")
        ids = ids.tolist()
        if self._eos_id in ids:
            ids = ids[: ids.index(self._eos_id)]
        ids = [i for i in ids if i not in (self._pad_id, self._bos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def decode_batch(self, ids_bt: Sequence[Sequence[int]]) -> list[str]:
        """``decode`` applied to each row of a [batch, time] array."""
        ids_bt = np.asarray(ids_bt)
        if ids_bt.ndim != 2:
            raise ValueError(f"HFTokenizer.decode_batch: expected a [batch, time] array, got "
                             f"shape {ids_bt.shape}; use decode for a single sequence.")
        return [self.decode(row) for row in ids_bt]

    def save(self, path: str) -> None:
        """Writes ``tokenizer.json`` and ``tokenizer_config.json`` (with the special tokens) to ``path``."""
        os.makedirs(path, exist_ok=True)
        self.tokenizer.save(os.path.join(path, "tokenizer.json"))
        tok_config = dict(self._files.get("tokenizer_config.json", {}))
        for name, token_id in (("eos", self._eos_id), ("pad", self._pad_id), ("bos", self._bos_id)):
            tok_config[f"{name}_token"] = (None if token_id is None
                                           else self.tokenizer.id_to_token(token_id))
        with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(tok_config, f, indent=2)
