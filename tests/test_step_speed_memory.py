"""The CPU peak-memory measurement of benchmarks/step_speed.py: a fresh process per policy, the peak resident
set above the point after the imports and a warm-up step."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import step_speed  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")


def test_cpu_peaks_grow_with_the_batch_and_with_a_learned_mixer() -> None:
    small, big = SimpleNamespace(batch=16, warmup=1), SimpleNamespace(batch=256, warmup=1)
    none_small = step_speed.cpu_peaks(["none"], small, "cnn")["none"]
    both = step_speed.cpu_peaks(["none", "automix"], big, "cnn")
    # the digits CNN's activations at batch 256 are megabytes; the interpreter and torch (hundreds of MiB) are out
    assert 0 < none_small < both["none"] < 200 * 2**20
    # AutoMix adds the momentum encoder, the MixBlock and their forward passes to the same step
    assert both["automix"] > 1.5 * both["none"]
