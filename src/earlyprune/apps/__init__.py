"""Ready-made studies: the demo and check-method."""
