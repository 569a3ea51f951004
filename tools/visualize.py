"""`python tools/visualize.py ...` is `mixbench visualize ...` (see mixbench/cli/visualize.py)."""
import sys

from mixbench.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["visualize", *sys.argv[1:]]))
