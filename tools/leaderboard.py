#!/usr/bin/env python
"""Thin wrapper: same as `mixbench leaderboard`."""
import sys

from mixbench.cli.leaderboard import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
