"""``mixbench list [REGISTRY]`` — what is registered, one line each (``mixbench list mixups``)."""

from __future__ import annotations

import sys
from typing import Sequence

from mixbench.errors import ConfigError
from mixbench.registry import REGISTRIES, closest, import_components, summary


def entries(name: str) -> list[tuple[str, str]]:
    """(key, one-line summary) of every entry registered in ``name`` by mixbench itself."""
    registry = REGISTRIES[name]
    return sorted((key, summary(obj)) for key, obj in registry.module_dict.items())


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    import_components()
    names = argv or list(REGISTRIES)
    for name in names:
        if name not in REGISTRIES:
            alias = name + "s"
            if alias not in REGISTRIES:
                raise ConfigError(f"registry '{name}' does not exist; {closest(name, REGISTRIES)}")
            name = alias
        rows = entries(name)
        print(f"{name} ({len(rows)})")
        width = max((len(k) for k, _ in rows), default=0)
        for key, text in rows:
            print(f"  {key:<{width}}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
