"""`python tools/test.py ...` is `mixbench test ...` (see mixbench/cli/test.py)."""
import sys

from mixbench.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["test", *sys.argv[1:]]))
