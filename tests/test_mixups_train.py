"""Every model-free policy inside a real digits training run (through the train CLI, in process).

One run switches among all static policies per batch (``switch`` with uniform probabilities), so a few epochs
exercise each of them in the real train step (including ManifoldMix's feature hook) within the CI budget.
"""

from __future__ import annotations

import glob
import json

import pytest

from mixbench.mixups.switch import Switch

pytestmark = pytest.mark.slow

POLICIES = ["none", "mixup", "cutmix", "timm_mix", "manifoldmix", "fmix", "gridmix", "smoothmix", "resizemix",
            "saliencymix", "maskmix"]
OPTIONS = {"maskmix": "mask_patch_size: 4", "manifoldmix": "layers: [0, 1, 2]",
           "timm_mix": "mixup_alpha: 0.8, cutmix_alpha: 1.0, mode: elem"}


def test_all_static_policies_train_on_digits(tmp_path, monkeypatch):
    from mixbench.cli.train import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    used: list[str] = []
    original = Switch.mix

    def spy(self, *args, **kwargs):
        batch = original(self, *args, **kwargs)
        used.append(batch.extras["policy"])
        return batch
    monkeypatch.setattr(Switch, "mix", spy)
    subs = ", ".join("{type: %s%s}" % (p, ", " + OPTIONS[p] if p in OPTIONS else "") for p in POLICIES)
    rc = main(["configs/digits/mixup.yaml", "mixup=switch", f"mixup.policies=[{subs}]", "~mixup.probs",
               "schedule.epochs=4", "model.backbone.width=16", "runtime.progress=off", f"work_dir={tmp_path}"])
    assert rc == 0
    record = json.loads(open(glob.glob(str(tmp_path / "digits" / "*" / "record.json"))[0]).read())
    assert record["status"] == "finished" and record["method"] == "switch"
    assert record["metrics"]["top1"]["final"] > 0.3  # chance is 0.1
    assert set(used) == set(POLICIES), f"never drawn: {set(POLICIES) - set(used)}"
