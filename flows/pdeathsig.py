"""Run a command that the kernel stops when the process that started it dies.

    python -m flows.pdeathsig PARENT_PID PROGRAM [ARG ...]

Sets ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (Linux), then replaces itself with ``PROGRAM``
(``execv``: same pid, the setting survives it). If the parent (``PARENT_PID``) is already gone
when the setting takes effect, it exits instead of running orphaned. On a system without ``prctl``
the program just runs (stopped by its parent's normal exit, as before).

Used for Prefect's temporary server (:class:`flows.prefect_env.LocalServer`): a wrapper
rather than ``Popen(preexec_fn=...)``, which is unsafe in a process with threads.
"""

from __future__ import annotations

import os
import signal
import sys

from etl.core.parallel import die_with_parent


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m flows.pdeathsig PARENT_PID PROGRAM [ARG ...]")
    die_with_parent(int(argv[0]), signal.SIGTERM)   # gone at once if PARENT_PID already died: nobody would stop us
    os.execv(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
