"""Exception types raised for user mistakes, and the one for the environment's failures.

Every error a user can cause is a ``ValueError`` subclass with a message that says what was wrong
and what the valid values are; the CLI turns these into one line and exit code 2.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset folder or file is missing, truncated, corrupt or in the wrong format."""


class SpecError(ValueError):
    """A run specification, preset or sweep file is invalid."""


class WrongDevice(SpecError):
    """This machine would compute a run on another kind of device than its id promises.

    A mistake of where the run was sent, not of the run: a sweep worker refuses it and leaves
    it pending (nothing stored) for a worker of its kind.
    """


class StoreError(ValueError):
    """The run store cannot be used (path is a file, not writable, disk full...)."""


class RunInterrupted(RuntimeError):
    """The environment, not the run, stopped it (out of memory, a lost torchrun peer).

    The run is left resumable (its checkpoints stay, no ``failed`` result is stored); running
    the same command again resumes it.
    """
