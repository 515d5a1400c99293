"""Argument types the commands share (light: no jax or orbax imported)."""
import argparse

BEST = "best"  # --step best: the train run's best checkpoint on validation (recjax.checkpoints.BEST)


def step_arg(text: str):
    """--step of eval, infer, score and export: a step number or 'best'."""
    if text == BEST:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a step number or 'best', got {text!r}") from None
