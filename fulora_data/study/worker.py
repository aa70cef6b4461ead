"""One step of a study in its own process: ``python -m fulora_data.study.worker STUDY STEP``.

What the local executor starts once per GPU (with ``CUDA_VISIBLE_DEVICES`` set to that GPU). Exit status 0
when the step's record is written; 1 with the reason as the last line of stderr otherwise.
"""

from __future__ import annotations

import sys

from fulora_data.errors import FuloraError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m fulora_data.study.worker STUDY STEP", file=sys.stderr)
        return 2
    from fulora_data.study.run import execute_step

    try:
        execute_step(args[0], args[1])
    except FuloraError as err:
        print(str(err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
