"""One exception root for everything Alpha Warehouse raises on purpose.

Every error says what went wrong and what to do about it. Callers catch
``AlphaError`` to handle any of them; the subclasses narrow the cause.
"""

from __future__ import annotations


class AlphaError(Exception):
    """Root of every error Alpha Warehouse raises on purpose."""


class ConfigError(AlphaError):
    """The warehouse configuration (ALPHA_HOME, config.toml, environment) is invalid."""


class BadInputError(AlphaError):
    """Input data failed validation. ``problems`` lists ``(file, row, reason)``.

    Nothing was written to the silver or gold store; the offending rows were
    recorded in the quarantine table with their reasons.
    """

    def __init__(self, problems: list[tuple[str, int | None, str]], quarantine_path: str | None = None):
        self.problems = list(problems)
        self.quarantine_path = quarantine_path
        lines = [f"{len(self.problems)} problem(s) in the input; nothing was stored:"]
        for file, row, reason in self.problems[:20]:
            where = f"{file}" if row is None else f"{file}, row {row}"
            lines.append(f"  {where}: {reason}")
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more")
        if quarantine_path:
            lines.append(f"Rejected rows are kept with their reasons in {quarantine_path}")
        super().__init__("\n".join(lines))


class NotIngestedError(AlphaError):
    """The warehouse has no data (or no features) yet for what was asked."""


class UnknownSymbolError(AlphaError):
    """A symbol that the warehouse has never ingested."""


class UnknownFeatureError(AlphaError):
    """A feature reference or feature service that is not registered."""


class NaiveTimestampError(AlphaError):
    """A timestamp without a time zone; the warehouse never guesses one."""


class EmptyInputError(AlphaError):
    """An empty entity frame, symbol list or feature list."""


class OnlineStoreError(AlphaError):
    """The online store (SQLite or Redis) could not be read or written."""


class VendorError(AlphaError):
    """A market-data vendor request failed. Messages never contain API keys."""


class VendorAuthError(VendorError):
    """The vendor refused the credentials (HTTP 401/403). Not retried: fix the key."""


class VendorNotFoundError(VendorError):
    """The vendor has no such resource (HTTP 404). Not retried."""


class VendorUnavailableError(VendorError):
    """Retries on 429/5xx/timeouts were exhausted."""


class VendorPayloadError(VendorError):
    """The vendor answered, but the body is not what its documented format says
    (truncated JSON, an HTML error page with status 200, a missing envelope).
    The body is kept in bronze; nothing from it reached silver."""


class BadSymbolError(AlphaError):
    """A symbol that cannot be a ticker (empty, path characters, too long)."""


class FactorInputError(AlphaError, ValueError):
    """A factor family's compute was given frames that are not what its declaration says
    (a missing column, a wrong dtype, unsorted or duplicated rows). Names the family and the fix."""


class DeclarationError(AlphaError, ValueError):
    """A factor, view, service or strategy declaration is malformed (a duplicate name, an output
    without a dtype, a reference to nothing). Names the declaration and what to change."""


class MissingColumnError(AlphaError, KeyError, ValueError):
    """A frame, table or source lacks a column the caller or a declaration needs. Names the
    columns missing (and, where known, the ones there are)."""

    __str__ = AlphaError.__str__  # the message as written, not KeyError's quoted repr


class ArgumentError(AlphaError, ValueError):
    """An argument has a value the function cannot take (mismatched frames, a date off the
    calendar). Names the argument and what it must be."""


class NotASessionError(ArgumentError):
    """A date that is not a session of the exchange calendar."""


class UnsupportedError(AlphaError, TypeError, NotImplementedError):
    """Something Alpha Warehouse does not do (a SQL entity frame, a source that is not a Feast
    FileSource, a saved dataset). Says what it does instead."""


class BrokerError(AlphaError):
    """A broker refused or failed a request (the message says which and why)."""


class UnknownDefinitionError(UnknownFeatureError, KeyError):
    """``Definitions[name]`` for a name that is no view, service, source or entity (a KeyError,
    as a mapping's lookup is; the message is the name)."""


class GoldDamagedError(AlphaError):
    """A gold file (a part of a feature view, or a build record) is missing, truncated or
    unreadable. Names the file and the command that rebuilds it from silver (``alpha nightly``)."""


class HomeBusyError(AlphaError):
    """Another flow run (a nightly or a backfill) holds the warehouse's run lock; says which
    (pid, start time). Wait for it, or let the command wait."""


class OrchestrationError(AlphaError):
    """Prefect's server for a run could not be started or reached (says where its log is)."""


class LookAheadError(AlphaError):
    """A value would be used before it was known: a training label whose horizon had not ended
    at the training time, a feature or price row after its decision time. Names the row and both
    times."""
