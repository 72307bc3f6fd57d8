"""Sweeps: grids of runs and the executors that run them."""
