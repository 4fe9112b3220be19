"""Exception types raised by robustxai.

All user-facing errors derive from :class:`RobustXAIError`, itself a ``ValueError``, so the CLI can turn
them into one-line messages and Python callers can catch them like any bad-argument error.
"""

from __future__ import annotations


def first_line(text: object) -> str:
    """The first line of ``str(text)``, stripped (``""`` when it is empty): an error told in one line."""
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


class RobustXAIError(ValueError):
    """A problem with the caller's input: names, keywords, tensors, configs or data."""


class UnknownNameError(RobustXAIError):
    """A registry was asked for a name it does not hold."""


class ConfigError(RobustXAIError):
    """An audit configuration is missing, unreadable or invalid."""


class DataError(RobustXAIError):
    """A data set is empty, unreadable or violates the image contract."""


class NotApplicableError(RobustXAIError):
    """A method cannot run on this model at all (a Grad-CAM layer it lacks, or one with no spatial grid).

    The audit skips that model × method pair with the reason; any other error of a unit fails the model.
    """
