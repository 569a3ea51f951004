"""``mixbench <verb> [args]``: dispatch to ``mixbench.cli.<verb>.main(argv)``.

Verbs: train, test, list, leaderboard, bench, visualize. A user mistake (:class:`ConfigError`) prints one
line and exits with status 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

from mixbench.errors import ConfigError

VERBS = {
    "train": "train one run, or a sweep with -m",
    "test": "evaluate a checkpoint",
    "list": "list registered components",
    "leaderboard": "aggregate run records into leaderboards",
    "bench": "run a benchmark suite",
    "visualize": "draw mixed samples of a policy, or a trained classifier's reliability diagram",
}


def guarded(fn: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run a verb; a ConfigError becomes one line on stderr and exit status 2."""
    try:
        return int(fn(argv) or 0)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ConfigError.exit_code


def usage() -> str:
    lines = ["usage: mixbench <verb> [args]", "", "verbs:"]
    lines += [f"  {v:<12} {d}" for v, d in VERBS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        import difflib

        near = difflib.get_close_matches(verb, VERBS, n=1)
        hint = f"did you mean '{near[0]}'?" if near else f"verbs: {', '.join(VERBS)}"
        print(f"error: unknown verb '{verb}'; {hint}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"mixbench.cli.{verb}")
    except ModuleNotFoundError as exc:
        if exc.name != f"mixbench.cli.{verb}":
            raise
        print(f"error: verb '{verb}' is not available in this installation", file=sys.stderr)
        return 2
    return guarded(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
