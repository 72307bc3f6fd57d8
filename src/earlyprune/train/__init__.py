"""Training: the loop, optimizers and schedules, several processes."""
