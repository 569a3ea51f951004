"""The task contract: label types, lazily built targets, losses and policies per task, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mixbench.cli.main import main as cli_main
from mixbench.config import load_config
from mixbench.config.validate import config_hash
from mixbench.errors import ConfigError
from mixbench.mixups.base import MixContext, OneHotTargets
from mixbench.mixups.learned.base import LearnedMixer
from mixbench.models.classifier import MixClassifier, MixDataPreprocessor
from mixbench.registry import BACKBONES, HEADS, LOSSES, MIXUPS, TASKS, build, import_components
from mixbench.tasks.base import supports
from mixbench.tasks.regression import WeightedTargets

import_components()
N, K, D, H = 8, 5, 2, 16
# Options that make a policy mix visibly on 16 px images (the rest use their defaults).
OPTIONS = {
    "switch": {"policies": [{"type": "mixup"}, {"type": "cutmix"}]},
    "maskmix": {"mask_patch_size": 4},
    "manifoldmix": {"layers": [1]},
    "cmixup": {"bandwidth": 0.5, "scope": "batch"},
}
# Policies that read the model (signals, attention, relabelling) and learned mixers (set up with the model's
# context) are exercised with their own models elsewhere.
MODEL_FREE = sorted(n for n, p in MIXUPS.module_dict.items()
                    if not p.needs and not p.relabels and n != "rankmixup" and not issubclass(p, LearnedMixer))
PAIRS = [(t, p) for t in sorted(TASKS.module_dict) for p in MODEL_FREE if supports(MIXUPS.get(p), t)]


def task_batch(task: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 3, H, H, generator=g)
    y = torch.randint(0, K, (N,), generator=g) if task == "classification" else torch.randn(N, D, generator=g)
    return x, y


def tiny_model(task: str, policy) -> MixClassifier:
    torch.manual_seed(0)
    out = K if task == "classification" else D
    backbone = build(BACKBONES, {"type": "digits_cnn", "width": 4}, "model.backbone", in_chans=3)
    head = build(HEADS, {"type": "linear"}, "model.head", in_features=backbone.num_features, num_classes=out)
    loss = build(LOSSES, {"type": TASKS.get(task).default_loss}, "loss", num_classes=out)
    t = TASKS.get(task)()
    pre = MixDataPreprocessor((0.0,) * 3, (1.0,) * 3, label_dtype=t.label_dtype)
    return MixClassifier(backbone, head, policy, loss, out, pre, targets=t.target_builder(out))


def test_every_policy_declares_registered_tasks():
    for name, policy in MIXUPS.module_dict.items():
        assert set(policy.tasks) <= set(TASKS.module_dict), name
    assert ("regression", "cmixup") in PAIRS and ("classification", "cmixup") not in PAIRS


def spy_on_loss(model, x, y):
    """The preprocessed training batch, and a dict that receives the MixBatch the loss sees on the next step."""
    seen = {}
    inner = model.loss_fn

    def spy(logits, batch):
        seen["batch"] = batch
        return inner(logits, batch)

    model.loss_fn = spy
    return model.data_preprocessor({"inputs": x, "labels": y}, True), seen


@pytest.mark.parametrize("task,name", PAIRS, ids=lambda v: str(v))
def test_policy_under_task_builds_the_task_targets(task, name):
    """Through the model's step: targets are the task's builder applied to the batch's parts, and the loss is
    finite; the labels the model sees have the task's type."""
    policy = build(MIXUPS, {"type": name, **OPTIONS.get(name, {})}, "mixup")
    model = tiny_model(task, policy)
    x, y = task_batch(task)
    data, seen = spy_on_loss(model, x, y)
    assert data["labels"].dtype == TASKS.get(task).label_dtype
    losses = model(**data, mode="loss")
    assert torch.isfinite(losses["loss"])
    b = seen["batch"]
    out = K if task == "classification" else D
    assert b.targets.shape == (N, out)
    if task == "classification":
        expected = sum(w.view(N, 1) * torch.nn.functional.one_hot(y[i], K).float() for i, w in zip(b.indices, b.weights))
    else:
        expected = sum(w.view(N, 1) * y[i] for i, w in zip(b.indices, b.weights))
    torch.testing.assert_close(b.targets, expected)


def test_cmixup_dataset_scope_mixes_with_partners_from_the_training_split():
    """Partners come from the attached pool (raw, normalised by the model), the batch carries them appended,
    and the loss sees λ·y + (1 − λ)·y_pool[j]."""
    policy = build(MIXUPS, {"type": "cmixup", "bandwidth": 0.5}, "mixup")
    model = tiny_model("regression", policy)
    g = torch.Generator().manual_seed(5)
    pool_x, pool_y = torch.randint(0, 255, (40, 3, H, H), generator=g, dtype=torch.uint8), torch.randn(40, D, generator=g)
    policy.attach(pool_x, pool_y)
    x, y = task_batch("regression")
    data, seen = spy_on_loss(model, x, y)
    assert torch.isfinite(model(**data, mode="loss")["loss"])
    b = seen["batch"]
    assert b.inputs.shape[0] == 2 * N and b.labels.shape == (2 * N, D) and b.layer == 0
    partner_y = b.labels[N:]
    where = [int((pool_y == row).all(1).nonzero()) for row in partner_y]  # each partner is a pool sample
    torch.testing.assert_close(b.inputs[N:], pool_x[where].float())  # normalised by the model (mean 0, std 1)
    lam = b.weights[0]
    torch.testing.assert_close(b.targets, lam.view(-1, 1) * y + (1 - lam).view(-1, 1) * partner_y)


MASK_POLICIES = ["cutmix", "fmix", "gridmix", "maskmix", "resizemix", "saliencymix", "smoothmix"]


@pytest.mark.parametrize("name", MASK_POLICIES)
def test_mask_policy_regression_targets_are_weighted_sums(name):
    policy = build(MIXUPS, {"type": name, **OPTIONS.get(name, {})}, "mixup")
    assert supports(policy, "regression")
    x, y = task_batch("regression", seed=3)
    b = policy(x, y, D, MixContext(generator=torch.Generator().manual_seed(1))).bind(WeightedTargets())
    assert b.mask is not None
    expected = torch.zeros(N, D)
    for idx, w in zip(b.indices, b.weights):
        for i in range(N):
            expected[i] += w[i] * y[idx[i]]
    torch.testing.assert_close(b.targets, expected)
    # the area weights realised by the mask, not a one-hot of the float targets
    assert not torch.allclose(b.weights[0], torch.ones(N))


def test_targets_are_lazy_and_follow_new_weights():
    calls = []

    def builder(labels, indices, weights):
        calls.append(1)
        return OneHotTargets(K)(labels, indices, weights)

    x, y = task_batch("classification")
    b = build(MIXUPS, {"type": "mixup"}, "mixup")(x, y, K, MixContext(generator=torch.Generator().manual_seed(0)))
    b = b.bind(builder)
    assert not calls
    first = b.targets
    assert b.targets is first and len(calls) == 1
    half = torch.full((N,), 0.5)
    b2 = b.with_weights([half, half])
    torch.testing.assert_close(b2.targets.sum(1), torch.ones(N))
    assert len(calls) == 2
    assert b2.targets.shape[1] == K  # num_classes is the targets' width, nothing in extras
    assert "num_classes" not in b2.extras


def test_default_classification_task_leaves_the_config_hash_unchanged():
    cfg, _ = load_config("configs/digits/mixup.yaml")
    assert cfg["task"] == {"type": "classification"} and cfg["loss"]["type"] == "soft_ce"
    explicit, _ = load_config("configs/digits/mixup.yaml", ["task=classification"])
    assert config_hash(cfg) == config_hash(explicit) == "d3b9037659"  # the hash before tasks existed
    noisy, _ = load_config("configs/digits/mixup.yaml", ["data.label_noise.type=symmetric",
                                                         "data.label_noise.rate=0.2"])
    assert config_hash(noisy) != config_hash(cfg)


@pytest.mark.parametrize("config,overrides,message", [
    ("configs/digits/mixup.yaml", ["mixup=cmixup"],
     r"^mixup\.type: 'cmixup' is a regression policy, but task 'classification' has class-index labels"),
    ("configs/regression/diabetes/erm.yaml", ["loss=soft_ce"],
     r"^loss\.type: 'soft_ce' is a classification loss, but task 'regression' has float labels"),
    ("configs/regression/diabetes/erm.yaml", ["mixup=puzzlemix"], r"^mixup\.type: 'puzzlemix' is a classification"),
    ("configs/regression/diabetes/erm.yaml", ["task.select=top1"],
     r"^task\.select: 'top1' is not a metric of task 'regression'; expected one of rmse"),
    ("configs/digits/mixup.yaml", ["data.label_noise.type=symmetric", "data.label_noise.rate=1.0"],
     r"^data\.label_noise\.rate: expected a number in \[0, 1\), got 1\.0"),
    ("configs/digits/mixup.yaml", ["data.label_noise.type=uniform", "data.label_noise.rate=0.2"],
     r"^data\.label_noise\.type: expected one of symmetric"),
    ("configs/digits/mixup.yaml", ["data.holdout=1.5"], r"^data\.holdout=1\.5: expected null, 'dataset' or"),
])
def test_bad_task_input_is_one_config_error(config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config, overrides)


def test_bad_task_input_exits_2_without_a_record(tmp_path: Path, capsys):
    code = cli_main(["train", "configs/regression/diabetes/erm.yaml", "loss=soft_ce", f"work_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: loss.type: 'soft_ce'")
    assert not list(tmp_path.rglob("record.json"))


def test_record_metric_directions_from_the_specs(tmp_path: Path):
    from mixbench.engine.report import summarise_metrics

    rows = [{"kind": "val", "epoch": e, "top1": t, "ece": c, "heldout_rmse": h, "rmse": r, "temperature": 1.5}
            for e, t, c, h, r in [(1, 0.5, 0.2, 3.0, 3.1), (2, 0.7, 0.1, 1.0, 2.0), (3, 0.6, 0.3, 2.0, 1.5)]]
    m = summarise_metrics(rows, k=2, select="rmse")
    assert m["top1"]["best"] == 0.7 and m["top1"]["direction"] == "higher"
    assert m["ece"]["best"] == 0.1 and m["ece"]["direction"] == "lower"
    assert m["rmse"]["best"] == 1.5 and m["rmse"]["selected"] == 2.0 and m["rmse"]["selected_epoch"] == 2
    assert "temperature" not in m  # a fitted value, not a score
    json.dumps(m)
