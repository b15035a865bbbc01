"""The error classes of mistakes a user can fix (scripts print them as one line, no traceback).

Data readers raise :class:`jaxhead.data.errors.DatasetError` (a ``ValueError``); the training
plumbing raises the subclasses of :class:`UserError` below. ``jaxhead.train.cli`` turns both, and
the operating system's errors about paths (missing, not writable, disk full), into one line.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names it and the fix."""


class WorkdirConflictError(UserError, RuntimeError):
    """The workdir holds a run made with another configuration, or a run that cannot resume."""


class WorkdirBusyError(WorkdirConflictError):
    """Another live process trains in the same workdir."""


class CheckpointError(UserError, RuntimeError):
    """No checkpoint to restore, or none of the checkpoints can be read."""
