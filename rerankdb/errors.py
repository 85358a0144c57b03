"""Errors raised by rerankdb.

Every error derives from :class:`RerankdbError`; the subclasses name precisely
what was wrong and what was expected, so callers (and the CLI) can show the
message as it is.
"""

from __future__ import annotations


class RerankdbError(Exception):
    """Base class of every rerankdb error."""


class ConfigError(RerankdbError):
    """A setting (environment variable or argument) is missing or malformed."""


class InvalidInputError(RerankdbError, ValueError):
    """Input that cannot be written or queried; nothing was written."""


class DimensionMismatchError(InvalidInputError):
    """A vector's dimension differs from the dimension the schema was installed with."""

    def __init__(self, expected: int, got: int, what: str = "vectors") -> None:
        self.expected = expected
        self.got = got
        super().__init__(
            f"{what} have dimension {got}, but the rerankdb schema was installed with "
            f"dimension {expected}; nothing was written"
        )


class UnknownKindError(InvalidInputError):
    """An interaction kind that is not in rerankdb.interaction_kinds."""

    def __init__(self, kinds: list[str], known: list[str]) -> None:
        self.kinds = kinds
        self.known = known
        super().__init__(
            f"unknown interaction kind(s) {', '.join(map(repr, kinds))}; expected one of "
            f"{', '.join(known)} (add new kinds to rerankdb.interaction_kinds); nothing was written"
        )


class SchemaNotInstalledError(RerankdbError):
    """The database has no rerankdb schema (or an outdated one)."""


class DatabaseUnavailableError(RerankdbError):
    """No connection to the database could be had in time (server down, unreachable, full)."""


class EmbeddedServerError(RerankdbError):
    """The embedded PostgreSQL server could not be started or stopped."""


class PermissionDeniedError(RerankdbError):
    """The connected role may not do this (README, "Roles")."""


class CitusError(RerankdbError):
    """The local Citus cluster could not be built, started or stopped, or a Citus install is not as expected."""
