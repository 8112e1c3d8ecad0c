"""Offline preference rows from a fixed data set (``polrl.tasks.preference_data``): pairs for
the pair losses and the reward model, labelled completions for KTO."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from polrl.collectors.context import Context, shapes
from polrl.core import Batch, Collector
from polrl.tasks.data import encode_prompts


def encode_responses(tokenizer, texts: list[str], width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``(response_bt int32, mask_bt float32)`` [len(texts), width]: each text's ids and EOS,
    right-padded with ``pad_id``; the mask marks the text and its EOS."""
    response = np.full((len(texts), width), pad_id, np.int32)
    mask = np.zeros((len(texts), width), np.float32)
    for b, text in enumerate(texts):
        ids = tokenizer.encode(text, eos=True)
        if len(ids) > width:
            raise ValueError(f"offline rows: {text!r} is {len(ids)} tokens with EOS, wider than the rows' {width} "
                             f"(rollout.max_new_tokens); check the rows with polrl.tasks.preference_data")
        response[b, : len(ids)] = ids
        mask[b, : len(ids)] = 1.0
    return response, mask


def pair_rows(examples: list[dict], tokenizer, prompt_len: int, width: int, pad_id: int) -> dict:
    """Host arrays of the pairs' rows ``[chosen_0, rejected_0, chosen_1, …]``: prompt and
    validity (each prompt twice), response and mask, ``reward_b`` 1 (chosen) / 0 (rejected)."""
    prompts = [e["prompt"] for e in examples for _ in range(2)]
    texts = [text for e in examples for text in (e["chosen"], e["rejected"])]
    prompt_bp, valid_bp = encode_prompts(tokenizer, prompts, prompt_len)
    response_bt, mask_bt = encode_responses(tokenizer, texts, width, pad_id)
    reward_b = np.tile(np.asarray([1.0, 0.0], np.float32), len(examples))
    return dict(prompt_bp=prompt_bp, prompt_valid_bp=valid_bp, response_bt=response_bt, mask_bt=mask_bt,
                reward_b=reward_b)


def unpaired_rows(examples: list[dict], tokenizer, prompt_len: int, width: int, pad_id: int) -> dict:
    """Host arrays of one row per labelled completion: prompt, response, mask, ``reward_b`` 1
    (desirable) / 0 and the label itself (bool)."""
    prompt_bp, valid_bp = encode_prompts(tokenizer, [e["prompt"] for e in examples], prompt_len)
    response_bt, mask_bt = encode_responses(tokenizer, [e["completion"] for e in examples], width, pad_id)
    label_b = np.asarray([bool(e["label"]) for e in examples], bool)
    return dict(prompt_bp=prompt_bp, prompt_valid_bp=valid_bp, response_bt=response_bt, mask_bt=mask_bt,
                reward_b=label_b.astype(np.float32), label_b=label_b)


def _offline(ctx: Context, rows_fn, rows_per_example: int, example_fields: dict) -> Collector:
    """A host collector turning this process's examples into ``rows_per_example`` rows each
    (``rows_fn``), assembled into the global batch."""
    task, width = ctx.task, ctx.sampling.max_new_tokens
    tokens = ctx.layout.jit(lambda mask_bt: mask_bt.sum(), ("batch",), "replicated")

    def collect(cstate, state, data, rng):
        del state, rng
        rows = rows_fn(data["examples"], task.tokenizer, task.max_prompt_len, width, ctx.pad_id)
        global_rows = data["prompt_bp"].shape[0] * rows_per_example
        arrays = ctx.layout.from_process_rows(rows, global_rows)
        label = arrays.pop("label_b", None)
        group_b = ctx.layout.from_global(np.arange(global_rows, dtype=np.int32) // rows_per_example)
        batch = Batch(**arrays, group_b=group_b,
                      aux={} if label is None else {"label_b": label}, group_size=rows_per_example)
        return batch, cstate, {"response_tokens": tokens(batch.mask_bt)}

    def example(prompts):
        return shapes(prompts * rows_per_example, task.max_prompt_len, width, rows_per_example,
                      reward_b=jnp.float32, group_b=jnp.int32, **example_fields)

    return Collector(init=lambda prompts: (), collect=collect, example=example, host=True)


def offline_pairs(ctx: Context) -> Collector:
    """Each step's examples (paired rows ``{"prompt", "chosen", "rejected"}``, e.g. a JSONL file
    read by ``polrl.tasks.preference_data``) as rows ``[chosen_0, rejected_0, chosen_1, …]`` in
    groups of two, ``reward_b`` 1 for the chosen and 0 for the rejected: the layout of
    ``best_and_worst``, so every pair loss (``dpo`` and its loss types, ``simpo``, ``orpo``) and
    the ``reward_model`` noun train on it unchanged. Responses are ``rollout.max_new_tokens``
    wide. Host collector (the texts are tokenized on the host). Logs ``response_tokens``."""
    return _offline(ctx, pair_rows, 2, {})


def offline_unpaired(ctx: Context) -> Collector:
    """Each step's examples (unpaired rows ``{"prompt", "completion", "label"}``) as one row per
    completion, the rows KTO reads: ``aux["label_b"]`` the label (desirable or not) and
    ``reward_b`` 1 / 0 beside it; ``group_b`` numbers the rows (groups of one). Host collector.
    Logs ``response_tokens``."""
    return _offline(ctx, unpaired_rows, 1, {"aux": {"label_b": ((), jnp.bool_)}})
