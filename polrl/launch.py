"""Launch an experiment: ``python -m polrl.launch --config experiments/NAME.py[:arg] --workdir DIR``.

Any config field can be overridden: ``--config.total_steps=50 --config.rollout.group_size=4``.
Relaunching with the same ``--workdir`` resumes from the latest complete checkpoint; SIGTERM
saves a checkpoint at the next step boundary and exits with status 0.

Multi-host (the same command on every host, before anything touches a device):
  * TPU VMs (and clusters JAX auto-detects, e.g. SLURM): ``--multihost``;
  * elsewhere: ``--coordinator=HOST:PORT --num_processes=N --process_id=I`` (process 0 serves
    the coordinator at HOST:PORT); CPU-only processes also need ``--cpu_collectives=gloo``.
Each process reads its own slice of every batch; process 0 writes metrics and plots. SIGTERM
must reach every process during the same step, as a TPU maintenance event does; they then stop
at the same step boundary and save the checkpoint together. The stop is not synchronized
across processes: a process signalled alone would wait forever for the others in that save.
Shard over all devices with e.g. ``--config.mesh.fsdp=-1`` (see ``polrl.sharding``).

On a CPU the launcher gives XLA one host device per core (``polrl.devices.use_every_core``) unless
``XLA_FLAGS`` already sets a device count, so the experiments' data-parallel mesh
(``mesh.data = -1``) keeps every core busy.
"""
from __future__ import annotations

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

from polrl.devices import use_every_core

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiments/NAME.py[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (metrics, checkpoints, curves)")
_PROGRESS = flags.DEFINE_bool("progress", True, "show a progress bar")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "jax.distributed.initialize() with auto-detection (TPU VMs)")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "multi-host: HOST:PORT of process 0's coordinator")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-host: number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-host: this process's index in [0, num_processes)")
_CPU_COLLECTIVES = flags.DEFINE_enum("cpu_collectives", None, ["gloo", "mpi"], "multi-process CPU collectives")
flags.mark_flags_as_required(["config", "workdir"])


def initialize_distributed(*, multihost: bool, coordinator: str | None, num_processes: int | None,
                           process_id: int | None, cpu_collectives: str | None) -> bool:
    """Calls ``jax.distributed.initialize`` when asked to; returns whether it did.

    Explicit ``coordinator`` / ``num_processes`` / ``process_id`` go together; ``multihost``
    alone lets JAX detect them (TPU VMs). Must run before any device is touched.
    """
    explicit = {"--coordinator": coordinator, "--num_processes": num_processes, "--process_id": process_id}
    given = [k for k, v in explicit.items() if v is not None]
    if given and len(given) != len(explicit):
        missing = sorted(set(explicit) - set(given))
        raise app.UsageError(f"{', '.join(given)} also need {', '.join(missing)} (or use --multihost on TPU VMs)")
    if not (given or multihost):
        return False
    import jax

    if cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator, num_processes, process_id)
    return True


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    use_every_core()
    initialize_distributed(multihost=_MULTIHOST.value, coordinator=_COORDINATOR.value,
                           num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
                           cpu_collectives=_CPU_COLLECTIVES.value)
    config = _CONFIG.value
    if config.get("trainer") == "control":  # classic control (polrl.control): one jitted run
        from polrl.control import run

        print(json.dumps({"workdir": os.path.abspath(_WORKDIR.value), "summary": run(config, _WORKDIR.value)}))
        return
    if config.get("trainer") == "diffusion":  # masked-diffusion LM (polrl.diffusion): SFT then BGPO
        from polrl.diffusion.train import run as run_diffusion

        summary = run_diffusion(config, _WORKDIR.value)
        print(json.dumps({"workdir": os.path.abspath(_WORKDIR.value), "summary": summary}))
        return
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    spec = build_spec(config, progress=_PROGRESS.value)
    trainer = Trainer(spec, _WORKDIR.value)
    summary = trainer.run()
    if trainer.is_chief:
        print(json.dumps({"workdir": os.path.abspath(_WORKDIR.value), "summary": summary,
                          "preempted": trainer.preempted}))


if __name__ == "__main__":
    app.run(main)
