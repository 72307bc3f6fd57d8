"""Masks: the type and its checks, exact selection, density, connectivity, FLOPs, keep_pruned."""
