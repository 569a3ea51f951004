"""Every model-reading policy trains end to end on digits through the train CLI (in process).

One short run per policy from its experiment file (``configs/digits/<policy>.yaml`` with the small CNN,
``configs/digits/vit/<policy>.yaml`` with the small ViT for the attention policies) for a few epochs (the
CNN runs on a 1,024-image subset, ``data.params.train_size``; the ViT, slower to start learning, on all
1,437, in batches of 32). Each run must finish, write a valid record naming the policy, keep a finite training loss and reach
a validation top-1 clearly above chance (0.1 on ten classes).

The runs use one intra-op thread: these models are so small that extra threads only add synchronisation,
and on a shared 2-core machine two threads made a ViT run several times slower.
"""

from __future__ import annotations

import glob
import json

import pytest
import torch

from mixbench.results.record import validate_record

pytestmark = pytest.mark.slow

COMMON = ["schedule.warmup_epochs=0", "eval.median_last_k=1",
          "runtime.progress=off", "runtime.tensorboard=false", "runtime.wandb=off", "runtime.checkpoint_interval=5"]
CNN = ["model.backbone.width=16", "data.params.train_size=1024", "schedule.epochs=3", "schedule.lr=0.1"]
VIT = ["schedule.epochs=6", "data.batch_size=32"]
# policy -> (experiment file, overrides that keep the run small)
CASES = {
    "puzzlemix": ("configs/digits/puzzlemix.yaml", CNN + ["mixup.blocks=[2,4]"]),
    "attentivemix": ("configs/digits/attentivemix.yaml", CNN),
    "snapmix": ("configs/digits/snapmix.yaml", CNN),
    "alignmix": ("configs/digits/alignmix.yaml", CNN + ["mixup.iters=20"]),
    "comixup": ("configs/digits/comixup.yaml", CNN + ["mixup.m_niter=2"]),  # groups of 20 as the reference
    "rankmixup": ("configs/digits/rankmixup.yaml", CNN),
    "transmix": ("configs/digits/vit/transmix.yaml", VIT),
    "tokenmix": ("configs/digits/vit/tokenmix.yaml", VIT),
    "mixpro": ("configs/digits/vit/mixpro.yaml", VIT),
    "smmix": ("configs/digits/vit/smmix.yaml", VIT),
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("policy", sorted(CASES))
def test_dynamic_policy_trains_on_digits(policy, tmp_path, monkeypatch):
    from mixbench.cli.train import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    config, overrides = CASES[policy]
    assert main([config, *overrides, *COMMON, f"work_dir={tmp_path}"]) == 0
    paths = glob.glob(str(tmp_path / "*" / "*" / "record.json"))
    assert len(paths) == 1
    record = json.loads(open(paths[0]).read())
    assert validate_record(record) == []
    assert record["status"] == "finished" and record["method"] == policy
    rows = [json.loads(line) for line in open(paths[0].replace("record.json", "metrics.jsonl"))]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert losses and all(loss == loss and abs(loss) < 1e4 for loss in losses)  # finite, no blow-up
    assert record["metrics"]["top1"]["final"] > 0.15, record["metrics"]["top1"]  # chance is 0.1
