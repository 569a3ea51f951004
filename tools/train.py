"""`python tools/train.py ...` is `mixbench train ...` (see mixbench/cli/train.py)."""
import sys

from mixbench.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
