"""``python tests/_die_in_save.py TRAIN_ARGS...``: ``tools/train.py`` that SIGKILLs itself inside a checkpoint save.

When the checkpoint file being written is named ``epoch_<DIE_IN_SAVE_EPOCH>.pth`` (or its temporary name),
the process writes the first half of its bytes and kills itself: the moment a real kill during a save hits.
"""

import os
import runpy
import signal
import sys

from mmengine.fileio.backends.local_backend import LocalBackend

_put = LocalBackend.put


def put(self, obj: bytes, filepath) -> None:
    name = f"epoch_{os.environ['DIE_IN_SAVE_EPOCH']}.pth"
    if os.path.basename(str(filepath)) in (name, f".{name}.part"):
        with open(filepath, "wb") as f:
            f.write(obj[: len(obj) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    _put(self, obj, filepath)


LocalBackend.put = put
sys.argv = [os.path.join(os.path.dirname(__file__), "..", "tools", "train.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
