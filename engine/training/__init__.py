"""Training: the loop, checkpoints, optimiser and schedule, EMA, logs, curves and the result file."""
