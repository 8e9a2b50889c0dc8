"""Errors a user can cause. The CLI prints their message as one line and exits with status 2."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class PaperzooError(Exception):
    """Base class of every error whose message is meant for the user (no traceback needed)."""

    exit_code = 2


class UnknownNameError(PaperzooError, KeyError):
    """An unknown model, paper, dataset or option name."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(PaperzooError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


class DataError(PaperzooError):
    """A dataset path or file that cannot be used."""


class ConfigError(PaperzooError):
    """An unknown configuration key or a value of the wrong type."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean a, b?)' for close matches of ``name``, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str], hint: str = "") -> UnknownNameError:
    choices = list(choices)
    msg = f"unknown {kind} '{name}'{suggest(name, choices)}"
    if hint:
        msg += f"; {hint}"
    return UnknownNameError(msg)
