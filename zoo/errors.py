"""The user mistakes zoo names: each a ``mambabench.errors.UserError`` (one red line on the command line,
exit 2) and, so that ``except KeyError`` / ``ValueError`` / ``TypeError`` callers keep working, the builtin
error it refines. Shape checks inside layers are programming errors and stay plain ValueErrors."""

from __future__ import annotations

from mambabench.errors import UserError


class UnknownModel(UserError, KeyError):
    """No registry entry has this name; the message lists the closest names."""


class UnknownOption(UserError, TypeError):
    """An override the entry's model class does not take; the message lists the options it does take."""


class BadOption(UserError, ValueError):
    """A model option (a registry override) with a value the model cannot be built with."""


class UnsupportedInput(UserError, ValueError):
    """An input the model cannot take: a resolution not divisible by the patch size, an image for a video model."""


class NotACheckpoint(UserError, ValueError):
    """The file is absent or holds no state dict; the message names the file."""


class CheckpointMismatch(UserError, ValueError):
    """The checkpoint does not fit the model (keys, shapes, fixed tables); the message names both."""
