"""Pruning methods: scorers, allocations, placements, ablations, sparse training, the prune/score API."""
