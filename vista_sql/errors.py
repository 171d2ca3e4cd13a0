"""The exceptions vista_sql raises.

Every error a user can cause is a :class:`VistaError`. Errors that point at the statement text carry
sqlglot's error fields (``description``, ``line``, ``col``, ``start_context``, ``highlight``,
``end_context``) in ``errors``, so tests and tools read the fields and people read the message.
Syntax errors are also sqlglot ``ParseError``s, as SPEC.md promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot.errors import ParseError, highlight_sql


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a piece of the plan came from in the statement text (0-based, inclusive offsets)."""

    line: int
    col: int
    start: int
    end: int


class VistaError(Exception):
    """Base of every error vista_sql raises for something the user can fix.

    ``exit_code`` is the command line's exit status for the error's kind (README, Command line):
    2 for a statement that cannot run as written, 3 for bad data, 4 when no plan fits.
    """

    exit_code = 2

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = errors or []

    @property
    def description(self) -> str | None:
        return self.errors[0]["description"] if self.errors else None

    @property
    def line(self) -> int | None:
        return self.errors[0]["line"] if self.errors else None

    @property
    def col(self) -> int | None:
        return self.errors[0]["col"] if self.errors else None

    @property
    def highlight(self) -> str | None:
        return self.errors[0]["highlight"] if self.errors else None

    @classmethod
    def at(cls, description: str, sql: str | None, origin: Origin | None) -> VistaError:
        """An error about the text at ``origin`` in ``sql``, shaped like a sqlglot ParseError."""
        if sql is None or origin is None:
            return cls(description, [_fields(description, None, None, "", "", "")])
        formatted, start_context, highlight, end_context = highlight_sql(
            sql=sql, positions=[(origin.start, origin.end)], context_length=100
        )
        message = f"{description}. Line {origin.line}, Col: {origin.col}.\n  {formatted}"
        return cls(
            message,
            [_fields(description, origin.line, origin.col, start_context, highlight, end_context)],
        )


def _fields(
    description: str,
    line: int | None,
    col: int | None,
    start_context: str,
    highlight: str,
    end_context: str,
) -> dict[str, Any]:
    return {
        "description": description,
        "line": line,
        "col": col,
        "start_context": start_context,
        "highlight": highlight,
        "end_context": end_context,
    }


class VistaSyntaxError(VistaError, ParseError):
    """A statement that does not parse: both a VistaError and a sqlglot ParseError."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        VistaError.__init__(self, message, errors)


class SemanticError(VistaError):
    """A statement that parses but names something unknown or uses a bad value."""


class ResourceError(VistaError):
    """No plan fits in the memory given; the message says how much would be needed."""

    exit_code = 4

    def __init__(
        self,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        *,
        needed_bytes: int | None = None,
    ) -> None:
        super().__init__(message, errors)
        self.needed_bytes = needed_bytes


class DataError(VistaError):
    """The data cannot be used as asked: unreadable images, duplicate or mismatched keys, ..."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        *,
        ids: tuple[Any, ...] = (),
        count: int | None = None,
    ) -> None:
        super().__init__(message, errors)
        self.ids = ids
        self.count = count


class CalibrationError(VistaError):
    """A calibration file that is not what ``vista-sql calibrate`` writes. It is only ever read as
    JSON and checked, never executed; the message names the file and what is wrong."""


class WeightsError(VistaError):
    """Weights that cannot be had, do not fit the CNN, or come from a file that is not what it
    claims to be (malformed, hostile, or asking to run code); the message names the file and says
    what to do."""


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """'valid: a, b, c' with the closest match first when one is close."""
    import difflib

    close = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=1)
    hint = ""
    if close:
        match = next(c for c in choices if c.lower() == close[0])
        hint = f"did you mean {match}? "
    return f"{hint}valid: {', '.join(choices)}"
