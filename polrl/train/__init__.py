"""Pure steps (``steps``), batch builders (``rollouts``), the trainer loop, checkpoints, metrics."""
