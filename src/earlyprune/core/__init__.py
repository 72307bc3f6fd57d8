"""What every layer may use: errors, the registry, random streams, scalars, processes, user code."""
