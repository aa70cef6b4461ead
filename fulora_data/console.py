"""The one default log of fulora's library functions: one line to stderr, between progress bars.

Library functions that report progress take ``log: Callable[[str], None] = log_stderr``; the CLI passes
its own (``click.echo(..., err=True)``) where it needs to, tests pass a list's ``append``. stdout stays
for results (``--json``), so a script can read them while the run talks on stderr.
"""

from __future__ import annotations

import sys


def log_stderr(message: str) -> None:
    """Print one message line to stderr, flushed, without breaking a tqdm progress bar that is drawn."""
    from tqdm.auto import tqdm

    tqdm.write(str(message), file=sys.stderr)
    sys.stderr.flush()
