"""One run: its spec, the store, numerics, environment, logs and the pipeline."""
