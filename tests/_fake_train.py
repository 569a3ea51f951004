"""A stand-in for ``mixbench train`` with the same run-dir contract, for suite tests.

``python tests/_fake_train.py CONFIG key=value ... seed=S work_dir=W`` writes
``W/<config stem>/<hash>-s<S>/record.json``: a no-op when that record is finished, a resume when it is
running. Each epoch sleeps ``FAKE_EPOCH_S`` seconds; every invocation appends one line to ``FAKE_TRAIN_LOG``.
"""

import hashlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _results_fixtures import make_record  # noqa: E402

from mixbench.results.record import read_record, write_record  # noqa: E402


def main(argv):
    config, overrides = argv[0], dict(a.split("=", 1) for a in argv[1:])
    seed, work_dir = int(overrides.pop("seed")), Path(overrides.pop("work_dir"))
    epochs = int(overrides.get("epochs", 4))
    if overrides.get("fail") == "1":
        print("configured to fail", file=sys.stderr)
        return 1
    h = hashlib.sha1((config + json.dumps(sorted(overrides.items()))).encode()).hexdigest()[:8]
    run_dir = work_dir / Path(config).stem / f"{h}-s{seed}"
    rec_path = run_dir / "record.json"
    state = read_record(rec_path)["status"] if rec_path.exists() else "new"
    with open(os.environ["FAKE_TRAIN_LOG"], "a") as f:
        f.write(f"{run_dir} {state}\n")
    if state == "finished":
        return 0
    base = 50.0 + 10 * (Path(config).stem == "good") + seed
    rec = make_record(Path(config).stem, seed, base, status="running", epochs=epochs, config_hash=h,
                      experiment=Path(config).stem)
    write_record(rec_path, rec)
    done = sum(1 for _ in open(run_dir / "metrics.jsonl")) if (run_dir / "metrics.jsonl").exists() else 0
    for epoch in range(done + 1, epochs + 1):
        time.sleep(float(os.environ.get("FAKE_EPOCH_S", "0.05")))
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"epoch": epoch, "kind": "val", "top1": (base - epochs + epoch) / 100}) + "\n")
    rec.update(status="finished", finished="2025-01-01T00:10:00")
    write_record(rec_path, rec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
