"""Writes experiments/data/arithmetic_cdr_smoke/{strong,weak}: the two policies of the CDR smoke run.

    python scripts/make_cdr_smoke.py

Trains experiments/arithmetic_grpo.py:smoke (3 SFT steps, the smoke model) in a temporary
directory with its main phase ``rl`` replaced by 3 more SFT steps on the demonstrations (the
smoke's 3 GRPO steps leave a policy that never answers right where it is — every group ties — and
strong = weak would make every ratio 0), reads the parameters of its two phases with
``polrl.train.reward_checkpoint.load_params`` — strong = ``checkpoints/rl``, weak =
``checkpoints/sft_warmup``, as a real CDR run reads them — and saves each as a one-step phase
checkpoint holding only ``state.params`` (no optimizer state, so the committed directories stay
small). Rerun it when the smoke model's shape or the checkpoint format changes.
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

from experiments import arithmetic_grpo  # noqa: E402
from polrl.core import PolicyState  # noqa: E402
from polrl.train.build import build_spec, frozen_model_structure  # noqa: E402
from polrl.train.checkpoint import PhaseCheckpointer  # noqa: E402
from polrl.train.reward_checkpoint import load_params, policy_source  # noqa: E402
from polrl.train.trainer import Trainer  # noqa: E402

OUT = ROOT / "experiments" / "data" / "arithmetic_cdr_smoke"
PHASES = {"strong": "rl", "weak": "sft_warmup"}


def save_params(directory: pathlib.Path, params, step: int) -> None:
    """A phase checkpoint at ``directory`` holding ``params`` as ``state.params`` (step ``step``)."""
    shutil.rmtree(directory, ignore_errors=True)
    state = PolicyState(step=jnp.int32(step), rng=jax.random.PRNGKey(0), params=params, opt_state=())
    checkpoint = PhaseCheckpointer(str(directory))
    checkpoint.save(step, state, position=0, global_step=step)
    checkpoint.close()
    for marker in directory.rglob("commit_success.txt"):  # a local checkpoint does not read them; they hold this machine's path
        marker.unlink()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("POLRL_DATA_DIR", os.path.join(tmp, "data"))
        config = arithmetic_grpo.get_config("smoke")
        config.update(algorithm="sft", collector="demonstrations", data="demos")
        config.algorithm_kwargs = dict(learning_rate=config.warmup.learning_rate)
        spec = build_spec(config, progress=False)
        Trainer(spec, os.path.join(tmp, "run")).run()
        _, shapes = frozen_model_structure(config.model, spec.task.tokenizer.vocab_size, value_head=False,
                                           field="model")
        for name, phase in PHASES.items():
            path = os.path.join(tmp, "run", "checkpoints", phase)
            params = load_params(path, shapes, policy_source(f"density_ratio.{name}", "density_ratio.model"))
            save_params(OUT / name, params, config.total_steps)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT}: {size} bytes")


if __name__ == "__main__":
    main()
