"""Writes experiments/data/arithmetic_reward_model_smoke: the reward model of the RLHF smoke run.

    python scripts/make_reward_model_smoke.py

Trains experiments/arithmetic_reward_model.py:smoke (3 SFT steps, 3 reward-model steps, the smoke
model) in a temporary directory, then saves only its parameters as a one-step phase checkpoint
(``state.params``; no optimizer state, so the committed directory stays small), the format
``polrl.train.reward_checkpoint.load_reward_params`` reads. Rerun it when the smoke model's shape
or the checkpoint format changes.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile

import jax
import jax.numpy as jnp

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments import arithmetic_reward_model  # noqa: E402
from polrl.core import PolicyState  # noqa: E402
from polrl.train.build import build_spec  # noqa: E402
from polrl.train.checkpoint import PhaseCheckpointer  # noqa: E402
from polrl.train.trainer import Trainer  # noqa: E402

OUT = ROOT / "experiments" / "data" / "arithmetic_reward_model_smoke"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("POLRL_DATA_DIR", os.path.join(tmp, "data"))
        config = arithmetic_reward_model.get_config("smoke")
        trainer = Trainer(build_spec(config, progress=False), os.path.join(tmp, "run"))
        trainer.run()
        params = trainer.params
    shutil.rmtree(OUT, ignore_errors=True)
    state = PolicyState(step=jnp.int32(config.total_steps), rng=jax.random.PRNGKey(0), params=params, opt_state=())
    checkpoint = PhaseCheckpointer(str(OUT))
    checkpoint.save(config.total_steps, state, position=0, global_step=config.total_steps)
    checkpoint.close()
    for marker in OUT.rglob("commit_success.txt"):  # a local checkpoint does not read them; they hold this machine's path
        marker.unlink()
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT}: {size} bytes")


if __name__ == "__main__":
    main()
