"""``python tests/_die_at_iter.py TRAIN_ARGS...``: ``tools/train.py`` that SIGKILLs itself at the second iteration of
epoch ``DIE_IN_EPOCH`` (0-based), after that epoch's first step: a kill -9 mid-epoch at a chosen point of the run,
whatever the machine's speed."""

import os
import runpy
import signal
import sys

from mmengine.runner.loops import EpochBasedTrainLoop

_run_iter = EpochBasedTrainLoop.run_iter


def run_iter(self, idx, data_batch) -> None:
    if self._epoch == int(os.environ["DIE_IN_EPOCH"]) and idx == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    _run_iter(self, idx, data_batch)


EpochBasedTrainLoop.run_iter = run_iter
sys.argv = [os.path.join(os.path.dirname(__file__), "..", "tools", "train.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
