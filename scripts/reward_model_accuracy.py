"""Pair accuracy of a trained reward model on a JSONL file of pairs: the fraction of pairs whose
chosen response it scores above the rejected one (0.5 is chance; ties count as errors).

    python scripts/reward_model_accuracy.py --config experiments/arithmetic_reward_model.py \
        --checkpoint runs/arithmetic_reward_model/checkpoints/reward_model \
        --pairs experiments/data/arithmetic_closeness_pairs_test.jsonl

The config gives the task (tokenizer and widths) and the reward model's shape (its ``model``
section); the checkpoint is the reward-model phase's directory. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the configs import experiments.*

from polrl.collectors.offline_pairs import pair_rows  # noqa: E402
from polrl.collectors.score_position import sequence_scores  # noqa: E402
from polrl.core import Batch  # noqa: E402
from polrl.tasks import preference_data  # noqa: E402
from polrl.train.build import build_task, reward_model_structure  # noqa: E402
from polrl.train.reward_checkpoint import load_reward_params  # noqa: E402


def pair_accuracy(graphdef, params, rows: dict) -> float:
    """Fraction of pairs (rows ``[chosen_0, rejected_0, …]`` of ``pair_rows``) with r(chosen) > r(rejected)."""
    batch = Batch(**{k: v for k, v in rows.items() if k != "reward_b"})
    scores = np.asarray(jax.jit(sequence_scores, static_argnums=0)(graphdef, params, batch))
    return float(np.mean(scores[0::2] > scores[1::2]))


def held_out_accuracy(config, checkpoint: str, pairs: str) -> dict:
    """``{"pairs", "accuracy"}`` of the reward model at ``checkpoint`` (shaped by ``config``'s task
    and model) on the JSONL file of pairs ``pairs``."""
    task = build_task(config)
    limits = preference_data.Limits(task.tokenizer, task.max_prompt_len, task.max_answer_len)
    examples = preference_data.load_jsonl(pairs, limits)
    graphdef, shapes = reward_model_structure(config.model, task.tokenizer.vocab_size)
    params = load_reward_params(checkpoint, shapes)
    rows = pair_rows(examples, task.tokenizer, task.max_prompt_len, task.max_answer_len, task.tokenizer.pad_id)
    return {"pairs": len(examples), "accuracy": pair_accuracy(graphdef, params, rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the reward model's experiment file")
    parser.add_argument("--arg", default="", help="the config's argument (e.g. smoke)")
    parser.add_argument("--checkpoint", required=True, help="WORKDIR/checkpoints/<phase> of the reward-model run")
    parser.add_argument("--pairs", required=True, help="a JSONL file of {prompt, chosen, rejected} rows")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("reward_model_config", args.config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(args.arg or None)
    print(json.dumps({**held_out_accuracy(config, args.checkpoint, args.pairs),
                      "checkpoint": args.checkpoint, "pairs_file": args.pairs}))


if __name__ == "__main__":
    main()
