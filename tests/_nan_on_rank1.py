"""``torchrun ... tests/_nan_on_rank1.py CONFIG key=value ...``: ``mixbench train`` where only rank 1's loss is
NaN, from its third iteration on.

The NaN is a constant added to the loss value, so the gradients that DDP averages stay finite and rank 0's own
loss never turns NaN: only a check that combines every rank's flag can stop rank 0.
"""

import math
import os
import sys

from mixbench.cli.main import main
from mixbench.losses.cross_entropy import SoftTargetCrossEntropy

FIRST_NAN_CALL = 3
_loss = SoftTargetCrossEntropy.__call__
_calls = 0


def _nan_on_rank1(self, logits, batch):
    global _calls
    _calls += 1
    loss = _loss(self, logits, batch)
    return loss + math.nan if os.environ.get("RANK") == "1" and _calls >= FIRST_NAN_CALL else loss


SoftTargetCrossEntropy.__call__ = _nan_on_rank1

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
