"""The quality layer's errors, both :class:`~etl.core.errors.AlphaError` subclasses."""

from __future__ import annotations

from etl.core.errors import AlphaError


class HealthCheckError(AlphaError):
    """A data health threshold was breached (``alpha health --strict``)."""

    def __init__(self, failed: list[str], report_path: str | None = None):
        self.failed = list(failed)
        self.report_path = report_path
        lines = [f"data health check failed: {len(self.failed)} threshold(s) breached:"]
        lines += [f"  {f}" for f in self.failed]
        if report_path:
            lines.append(f"See the report for every finding: {report_path}")
        super().__init__("\n".join(lines))


class BarsFrameError(AlphaError, ValueError):
    """A bars frame handed to a health check lacks ``symbol`` or ``session``.
    A ``ValueError`` too, as it was before it had its own class."""
