#!/usr/bin/env python
"""Thin wrapper: same as `mixbench bench`."""
import sys

from mixbench.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
