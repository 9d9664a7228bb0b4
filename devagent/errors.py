"""Errors users see. Each carries the process exit code the CLI contract assigns to it."""

from __future__ import annotations


class DevagentError(Exception):
    """An error with a clear one-line message for the user (exit code 1)."""

    exit_code = 1


class UsageError(DevagentError):
    exit_code = 2


class DockerUnavailable(DevagentError):
    pass


class ImageMissing(DevagentError):
    pass


class ThreadNotFound(DevagentError):
    pass


class ThreadBusy(DevagentError):
    pass


class StateCorrupted(DevagentError):
    pass


class ApprovalMismatch(DevagentError):
    """A stored run disagrees with the decisions recorded in the store (tampering or drift)."""
