"""`python tools/list.py ...` is `mixbench list ...` (see mixbench/cli/list.py)."""
import sys

from mixbench.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["list", *sys.argv[1:]]))
