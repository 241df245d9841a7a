"""`fer-edge` (the console script) and `python -m edge`: the same command as `python -m edge.run`."""

from __future__ import annotations

import sys


def main() -> None:
    from edge.signals import stop_signals  # first of all, as `python -m edge.run` does: a Ctrl-C while the

    stop_signals.install(exit_at_once=True)  # modules below import ends the program with its exit code

    from edge import run

    prog = "python -m edge" if sys.argv and sys.argv[0].endswith("__main__.py") else "fer-edge"
    run.leave(run.main(prog=prog))


if __name__ == "__main__":
    main()
