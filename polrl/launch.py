"""Launch an experiment: ``python -m polrl.launch --config experiments/NAME.py[:arg] --workdir DIR``.

Any config field can be overridden: ``--config.total_steps=50 --config.rollout.group_size=4``.
Relaunching with the same ``--workdir`` resumes from the latest complete checkpoint.
"""
from __future__ import annotations

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiments/NAME.py[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (metrics, checkpoints, curves)")
_PROGRESS = flags.DEFINE_bool("progress", True, "show a progress bar")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    config = _CONFIG.value
    spec = build_spec(config, progress=_PROGRESS.value)
    summary = Trainer(spec, _WORKDIR.value).run()
    print(json.dumps({"workdir": os.path.abspath(_WORKDIR.value), "summary": summary}))


if __name__ == "__main__":
    app.run(main)
