"""Malformed inputs end in one line naming the key, exit status 2, and leave no run state behind.

Every case goes through the command line (``mixbench.cli.main.main``) from an empty directory with its own
``work_dir``; afterwards no file may have appeared there (no run dir, no wandb or TensorBoard dir, no record).
The range checks behind them are tested one key at a time below.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
import yaml
from _spine import ROOT, env

from mixbench.cli import main as cli_main
from mixbench.config import check_data, load_config
from mixbench.config.compose import DEFAULT_CONFIGS, GROUPS
from mixbench.config.schema import RANGES
from mixbench.config.validate import check_paths, check_ranges
from mixbench.datasets.base import TensorImageDataset, split_size
from mixbench.datasets.loaders import build_loader
from mixbench.errors import ConfigError
from mixbench.mixups.base import MixContext, non_negative
from mixbench.ranges import OPTION_RANGES, UNIT, Range, declared_ranges, option_range
from mixbench.registry import DATASETS, MIXUPS, accepted_options, build, import_components

DIGITS = str(ROOT / "configs" / "digits" / "mixup.yaml")
DIGITS_TRAIN = 1437  # size of the digits training split (docs/datasets.md)
# the line after `seed: 0` of the digits experiment, where PyYAML reports the unclosed sequence written there
BAD_LINE = (DEFAULT_CONFIGS / "digits" / "mixup.yaml").read_text().splitlines().index("seed: 0") + 2


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, with configs a case may need written into ``inputs/``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "not_a_dir").write_text("a file\n")
    configs = inputs / "configs"
    for group in GROUPS:
        (configs / group).mkdir(parents=True)
        for f in (DEFAULT_CONFIGS / group).glob("*.yaml"):
            (configs / group / f.name).write_text(f.read_text())
    (configs / "digits").mkdir()
    good = (DEFAULT_CONFIGS / "digits" / "mixup.yaml").read_text()
    (configs / "digits" / "mixup.yaml").write_text(good)
    # the seed line opens a flow sequence that is never closed; PyYAML reports the next line, where it gives up
    (configs / "digits" / "bad_syntax.yaml").write_text(good.replace("seed: 0", "seed: [0\nwork_dir: x"))
    (configs / "mixup" / "bad_group.yaml").write_text("type: mixup\nalpha: 0.2\n  prob: 1\n")
    suite = {"name": "s", "work_dir": str(tmp_path / "work"), "seeds": [0],
             "overrides": ["schedule.epochs=1", "runtime.wandb=off"],
             "runs": [{"config": DIGITS, "label": "ok"}, {"config": DIGITS, "label": "typo",
                                                         "overrides": ["mixup.alpah=0.2"]}]}
    (inputs / "suite_typo.yaml").write_text(yaml.safe_dump(suite))
    suite["runs"][1]["overrides"] = ["schedule.lr=-1"]
    (inputs / "suite_bad_value.yaml").write_text(yaml.safe_dump(suite))
    suite["runs"][1]["overrides"] = ["data.batch_size=5000"]
    (inputs / "suite_big_batch.yaml").write_text(yaml.safe_dump(suite))
    suite["runs"] = suite["runs"][:1]
    suite["seeds"] = [0, -1]
    (inputs / "suite_seed.yaml").write_text(yaml.safe_dump(suite))
    return tmp_path


W = "work_dir=work"
TRAIN = ["train", DIGITS, W, "schedule.epochs=1", "runtime.wandb=offline"]
# (argv, words the one-line message must contain)
MALFORMED = [
    (TRAIN + ["schedule.lr=-1"], ["schedule.lr", "> 0"]),
    (TRAIN + ["schedule.momentum=1.5"], ["schedule.momentum"]),
    (TRAIN + ["schedule.weight_decay=-1e-4"], ["schedule.weight_decay"]),
    (TRAIN + ["schedule.warmup_epochs=-1"], ["schedule.warmup_epochs"]),
    (TRAIN + ["schedule.clip_grad=0"], ["schedule.clip_grad"]),
    (TRAIN + ["runtime.ema=true", "runtime.ema_momentum=1.0"], ["runtime.ema_momentum"]),
    (TRAIN + ["mixup.alpha=-1"], ["mixup.alpha", "≥ 0"]),
    (TRAIN + ["mixup=cutmix", "mixup.alpha=-0.5"], ["mixup.alpha", "≥ 0"]),
    (TRAIN + ["mixup=timm_mix", "mixup.cutmix_alpha=-1"], ["mixup.cutmix_alpha", "≥ 0"]),
    (TRAIN + ["mixup.prob=1.5"], ["mixup.prob"]),
    (TRAIN + ["loss.label_smoothing=1.0"], ["loss.label_smoothing"]),
    (TRAIN + ["+model.head.dropout=-0.1"], ["model.head.dropout"]),
    (TRAIN + ["data.root=inputs/not_a_dir"], ["data.root", "not_a_dir", "directory"]),
    (TRAIN + ["data=cifar100", "data.root=inputs/not_a_dir"], ["data.root", "directory"]),
    (TRAIN + ["data=cifar100", "data.root=inputs"], ["data.root", "cifar-100-python"]),
    (["train", "inputs/configs/digits/bad_syntax.yaml", W], [f"bad_syntax.yaml:{BAD_LINE}:", "not valid YAML"]),
    (["train", "inputs/configs/digits/mixup.yaml", W, "mixup=bad_group"], ["bad_group.yaml:3:", "YAML"]),
    (TRAIN + ["seed=-1"], ["seed=-1"]),
    (TRAIN + [f"seed={2**32}"], ["seed"]),
    (TRAIN + ["data.batch_size=1438"], ["data.batch_size=1438", "1437"]),
    (TRAIN + ["data.batch_size=64", "+data.params.train_size=10"], ["data.batch_size=64", "10 images"]),
    (TRAIN + ["data.holdout=0.97"], ["data.holdout=0.97", "holds out 1394 of the 1437", "leaves 43",
                                     "data.batch_size=64"]),
    (["train", DIGITS, "work_dir=", "schedule.epochs=1"], ["work_dir", "empty"]),
    (TRAIN + ["experiment=../../escape"], ["experiment", "../../escape"]),
    (TRAIN + ["experiment=a/b"], ["experiment", "a/b"]),
    (TRAIN + ["experiment=${oc.env:HOME}"], ["experiment", os.path.expanduser("~")]),
    (TRAIN + ["experiment=.."], ["experiment"]),
    (TRAIN + ["experiment="], ["experiment"]),
    (TRAIN + ["mixup=puzzlemix", "mixup.neigh_size=0"], ["mixup.neigh_size=0", "≥ 1"]),
    (TRAIN + ["runtime.max_keep_ckpts=0"], ["runtime.max_keep_ckpts=0", "-1 or ≥ 1"]),
    (["train", "-m", DIGITS, W, "schedule.epochs=1", "data.batch_size=64,5000"], ["data.batch_size=5000"]),
    (["train", "-m", DIGITS, W, "schedule.epochs=1", "schedule.lr=0.1,-1"], ["schedule.lr"]),
    (["bench", "run", "inputs/suite_typo.yaml"], ["runs[1]", "mixup.alpah", "alpha"]),
    (["bench", "run", "inputs/suite_bad_value.yaml"], ["runs[1]", "schedule.lr"]),
    (["bench", "run", "inputs/suite_big_batch.yaml"], ["runs[1]", "data.batch_size"]),
    (["bench", "run", "inputs/suite_seed.yaml"], ["seeds", "-1"]),
    (["test", DIGITS, "--checkpoint", "inputs/not_a_dir", "data.root=inputs/not_a_dir"], ["data.root"]),
]


@pytest.mark.parametrize("argv,words", MALFORMED, ids=[" ".join(a[len(TRAIN):] if a[:len(TRAIN)] == TRAIN else a)
                                                       for a, _ in MALFORMED])
def test_malformed_input_is_one_line_and_leaves_nothing(sandbox: Path, capsys: pytest.CaptureFixture,
                                                        argv: list[str], words: list[str]) -> None:
    before = _files(sandbox)
    assert cli_main.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for w in words:
        assert w in err, err
    assert _files(sandbox) == before  # no run dir, wandb/tb dir or record, inside or outside work_dir


def test_yaml_syntax_error_from_the_real_command_has_no_traceback(sandbox: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "inputs/configs/digits/bad_syntax.yaml",
                           W], capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"bad_syntax.yaml:{BAD_LINE}:" in proc.stderr


# ------------------------------------------------------------------------------- the range checks, unit by unit


def test_range_bounds_are_open_or_closed_as_declared() -> None:
    closed, open_ = Range(0, 1), Range(0, 1, lo_open=True, hi_open=True)
    assert 0 in closed and 1 in closed and 0.5 in closed and -1e-9 not in closed and 1 + 1e-9 not in closed
    assert 0 not in open_ and 1 not in open_ and 1e-9 in open_
    assert math.nan not in Range() and math.inf in Range(0) and -math.inf not in Range(0)
    assert str(closed) == "a value in [0, 1]" and str(open_) == "a value in (0, 1)"
    assert str(Range(0, lo_open=True)) == "> 0" and str(Range(1)) == "≥ 1"
    assert str(RANGES["seed"]) == "a value in [0, 4294967295]"


@pytest.fixture(scope="module")
def base() -> tuple[dict, object]:
    return load_config(DIGITS)


def _outside(allowed: Range) -> list[float]:
    """Values just outside each bound of ``allowed`` (the bound itself when it is open)."""
    out = []
    if allowed.lo is not None:
        out.append(allowed.lo if allowed.lo_open else allowed.lo - 1)
    if allowed.hi is not None:
        out.append(allowed.hi if allowed.hi_open else allowed.hi + 1)
    return out


def _inside(allowed: Range) -> list[float]:
    """The closed bounds, and a value strictly inside for an open one."""
    lo = allowed.lo if allowed.lo is not None else (allowed.hi - 1 if allowed.hi is not None else 0)
    hi = allowed.hi if allowed.hi is not None else lo + 1
    vals = [lo if not allowed.lo_open else (lo + hi) / 2 if allowed.hi is not None else lo + 1]
    vals.append(hi if not allowed.hi_open else (lo + hi) / 2)
    return vals + list(allowed.also)


def _set(cfg: dict, key: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = [value] if isinstance(node[leaf], list) else value
    return cfg


def test_every_numeric_schema_key_has_a_range(base) -> None:
    cfg, _ = base

    def numeric(node, prefix=""):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if key in ("model", "mixup", "loss", "data.params"):  # component options: see OPTION_RANGES
                continue
            if isinstance(v, dict):
                yield from numeric(v, key + ".")
            elif (isinstance(v, (int, float)) and not isinstance(v, bool)) or (
                    isinstance(v, list) and all(isinstance(x, (int, float)) for x in v)) or v is None:
                yield key

    # data.root is a path; data.holdout and data.label_noise are checked with the task (mixbench/config/task.py),
    # since what they allow depends on it; data.random_resized_crop is a mapping whose values
    # ResizedCrop.from_config checks (tests/test_imagenet_recipe.py)
    keys = set(numeric(cfg)) - {"data.root", "data.holdout", "data.label_noise", "data.random_resized_crop"}
    assert keys <= set(RANGES), sorted(keys - set(RANGES))


@pytest.mark.parametrize("key", sorted(RANGES))
def test_range_check_rejects_each_key_outside_and_accepts_its_bounds(base, key: str) -> None:
    cfg, source = base
    allowed = RANGES[key]
    check_ranges(cfg, source)
    for bad in _outside(allowed):
        with pytest.raises(ConfigError) as info:
            check_ranges(_set(cfg, key, bad), source)
        assert str(info.value).startswith(f"{key}=") and str(allowed) in str(info.value)
    for good in _inside(allowed):
        ok = _set(cfg, key, good)
        if key == "schedule.min_lr":  # min_lr may not exceed lr
            ok["schedule"]["lr"] = max(good, ok["schedule"]["lr"])
        check_ranges(ok, source)


@pytest.mark.parametrize("option", sorted(OPTION_RANGES))
def test_component_option_ranges(base, option: str) -> None:
    cfg, source = base
    for group in ("mixup", "loss"):
        for bad in _outside(OPTION_RANGES[option]):
            with pytest.raises(ConfigError, match=f"^{group}.{option}="):
                check_ranges(_set(cfg, group, {**cfg[group], option: bad}), source)
        for good in _inside(OPTION_RANGES[option]):
            check_ranges(_set(cfg, group, {**cfg[group], option: good}), source)


# What a policy needs besides the option under test: a required option, or a companion that an in-range value
# would otherwise conflict with (min ≤ max, a mode that the value turns off).
REQUIRED = {"switch": {"policies": [{"type": "mixup"}, {"type": "cutmix"}]}}
COMPANIONS = {("smmix", "min_side_ratio"): {"max_side_ratio": 1.0}, ("resizemix", "alpha"): {"use_alpha": False},
              ("timm_mix", "mixup_alpha"): {"cutmix_alpha": 1.0}, ("cmixup", "prob"): {"scope": "batch"},
              # learned mixers: the end momentum may not be below the start; min_lr ends the group's own lr
              **{(m, "end_momentum"): {"momentum": 0.0} for m in ("automix", "samix", "adautomix")},
              **{(m, "momentum"): {"end_momentum": 1.0} for m in ("automix", "samix", "adautomix")},
              **{(m, "min_lr"): {"lr": 0.1} for m in ("automix", "samix", "adautomix", "adamixup")}}
# Options without a default whose value is a list: how many numbers a value of theirs holds.
LIST_LENGTHS = {"mean": 3, "std": 3, "cutmix_minmax": 2, "probs": 2}


def _numeric_options(policy: type) -> dict[str, int | None]:
    """Every numeric option of a policy's signature: name -> list length (``None`` for a scalar)."""
    hints = typing.get_type_hints(policy.__init__)
    out = {}
    for name, param in accepted_options(policy).items():
        default, hint = param.default, str(hints.get(name, ""))
        if isinstance(default, bool) or "bool" in hint:
            continue
        if isinstance(default, (list, tuple)) and default and all(isinstance(v, (int, float)) for v in default):
            out[name] = len(default)
        elif isinstance(default, (int, float)):
            out[name] = None
        elif default is None and ("int" in hint or "float" in hint):
            out[name] = LIST_LENGTHS.get(name) if "Sequence" in hint else None
    return out


import_components()
POLICY_OPTIONS = sorted((key, option) for key, policy in MIXUPS.module_dict.items() for option in _numeric_options(policy))


def test_every_policy_has_numeric_options_to_check() -> None:
    assert len(POLICY_OPTIONS) > 60 and ("puzzlemix", "t_size") in POLICY_OPTIONS


@pytest.mark.parametrize("key,option", POLICY_OPTIONS)
def test_every_numeric_policy_option_has_a_range_enforced_at_build(key: str, option: str) -> None:
    """Every numeric option of every registered policy, found from its signature, has a range (declared by the
    policy or fixed by the option's name); a value outside fails the build with one line naming the key, the
    bounds and the values allowed outside the interval pass."""
    policy = MIXUPS.get(key)
    allowed = declared_ranges(policy).get(option) or option_range(option)
    assert allowed is not None, f"mixup {key}: option {option!r} has no range (add it to {policy.__name__}.ranges)"
    length = _numeric_options(policy)[option]
    base = {"type": key, **REQUIRED.get(key, {}), **COMPANIONS.get((key, option), {})}
    for bad in _outside(allowed):
        value = bad if length is None else [bad] * length
        with pytest.raises(ConfigError) as info:
            build(MIXUPS, {**base, option: value}, "mixup")
        assert str(info.value).startswith(f"mixup.{option}=") and str(allowed) in str(info.value)
        assert "\n" not in str(info.value)
    inside = _inside(allowed)
    values = inside if length is None else [[inside[0]] + [inside[-1]] * (length - 1)]
    for good in values:
        build(MIXUPS, {**base, option: good}, "mixup")


def test_max_keep_ckpts_allows_minus_one_and_refuses_zero(base) -> None:
    cfg, source = base
    for good in (-1, 1, 2):
        check_ranges(_set(cfg, "runtime.max_keep_ckpts", good), source)
    for bad in (0, -2):
        with pytest.raises(ConfigError, match=r"^runtime.max_keep_ckpts=.*: expected -1 or ≥ 1"):
            check_ranges(_set(cfg, "runtime.max_keep_ckpts", bad), source)


def test_every_prob_option_is_a_probability(base) -> None:
    cfg, source = base
    assert option_range("switch_prob") == option_range("input_prob") == UNIT and option_range("alpha") is None
    with pytest.raises(ConfigError, match=r"^mixup.input_prob=1.5: expected a value in \[0, 1\]"):
        check_ranges(_set(cfg, "mixup", {**cfg["mixup"], "input_prob": 1.5}), source)


@pytest.mark.parametrize("loss,option,bad", [("decoupled", "eta", -0.1), ("decoupled", "thr", 1.5),
                                             ("decoupled", "lam_idx", -1.0), ("rankmixup", "alpha", -0.1),
                                             ("rankmixup", "margin", -1.0), ("bce", "two_hot_scale", 0.0),
                                             ("bce", "target_threshold", 2.0)])
def test_loss_options_are_checked_before_the_data(loss: str, option: str, bad: float) -> None:
    with pytest.raises(ConfigError, match=f"^loss.{option}"):
        load_config(DIGITS, [f"loss={loss if loss != 'rankmixup' else 'rankmixup_mrl'}", f"++loss.{option}={bad}"])


def test_min_lr_above_lr_is_refused(base) -> None:
    cfg, source = base
    with pytest.raises(ConfigError, match="schedule.min_lr"):
        check_ranges(_set(cfg, "schedule.min_lr", cfg["schedule"]["lr"] * 2), source)


@pytest.mark.parametrize("name,ok", [("digits", True), ("cifar100_r18-v2", True), ("a/b", False), ("..", False),
                                     (".", False), ("", False), ("/abs", False), ("../escape", False)])
def test_experiment_is_one_path_component(base, name: str, ok: bool) -> None:
    cfg, source = base
    if ok:
        check_paths(_set(cfg, "experiment", name), source)
    else:
        with pytest.raises(ConfigError, match="^experiment="):
            check_paths(_set(cfg, "experiment", name), source)
    with pytest.raises(ConfigError, match="^work_dir="):
        check_paths(_set(cfg, "work_dir", "  "), source)


# ---------------------------------------------------------------------------------------------- alpha = 0 vs < 0


@pytest.mark.parametrize("name,option", [("mixup", "alpha"), ("cutmix", "alpha"), ("timm_mix", "mixup_alpha"),
                                         ("timm_mix", "cutmix_alpha")])
def test_negative_alpha_is_an_error(name: str, option: str) -> None:
    with pytest.raises(ConfigError, match=f"^mixup.{option}=-1.0: expected ≥ 0"):
        build(MIXUPS, {"type": name, option: -1.0, **({"mixup_alpha": 1.0} if option == "cutmix_alpha" else {})},
              "mixup")
    with pytest.raises(ValueError):
        non_negative(option, -1e-9)
    assert non_negative(option, 0) == 0.0


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_zero_alpha_turns_mixing_off(name: str) -> None:
    x, labels = torch.randn(8, 1, 8, 8), torch.arange(8) % 4
    batch = build(MIXUPS, {"type": name, "alpha": 0.0}, "mixup")(x, labels, 4,
                                                                 MixContext(torch.Generator().manual_seed(0)))
    assert torch.equal(batch.inputs, x) and torch.equal(batch.targets, torch.eye(4)[labels])


# ------------------------------------------------------------------------------------------------ data checks


def test_holdout_must_leave_a_full_batch_per_process(base) -> None:
    cfg, source = base
    cfg = _set(cfg, "data.holdout", 0.5)  # holds out round(718.5) = 718 of 1437 images, 719 left
    check_data(_set(cfg, "data.batch_size", 719), source)
    with pytest.raises(ConfigError, match=r"^data.holdout=0.5: holds out 718 of the 1437 training images and "
                                          r"leaves 719, fewer than data.batch_size=720"):
        check_data(_set(cfg, "data.batch_size", 720), source)
    check_data(_set(cfg, "data.batch_size", 359), source, world_size=2)
    with pytest.raises(ConfigError, match="leaves 719, 359 per process over 2 processes, fewer than "
                                          "data.batch_size=360"):
        check_data(_set(cfg, "data.batch_size", 360), source, world_size=2)
    one = _set(_set(_set(cfg, "data.batch_size", 1), "data.params", {"train_size": 1}), "data.holdout", 0.1)
    with pytest.raises(ConfigError, match="^data.holdout=0.1: the training split has 1 image"):
        check_data(one, source)


def test_batch_size_is_checked_per_process(base) -> None:
    cfg, source = base
    per_process = DIGITS_TRAIN // 2
    check_data(_set(cfg, "data.batch_size", per_process), source, world_size=2)
    with pytest.raises(ConfigError, match=f"^data.batch_size={per_process + 1}: .*{per_process} per process"):
        check_data(_set(cfg, "data.batch_size", per_process + 1), source, world_size=2)
    check_data(_set(cfg, "data.batch_size", DIGITS_TRAIN), source)
    check_data(_set(cfg, "data.batch_size", 10**6), source, train=False)  # evaluation keeps the last batch


def test_loader_with_no_full_batch_is_refused() -> None:
    ds = TensorImageDataset(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10) % 2, 2)
    assert len(build_loader(ds, train=True, batch_size=5, world_size=2, rank=1)) == 1
    with pytest.raises(ConfigError, match="data.batch_size=6"):
        build_loader(ds, train=True, batch_size=6, world_size=2, rank=0)
    assert len(build_loader(ds, train=False, batch_size=6, world_size=2)) == 1


def _cifar_tree(root: Path, folder: str, files: list[str]) -> None:
    (root / folder).mkdir(parents=True)
    for f in files:
        (root / folder / f).write_bytes(b"")


def test_cifar_probe_checks_the_layout_without_reading_the_files(tmp_path: Path) -> None:
    _cifar_tree(tmp_path, "cifar-100-python", ["train", "test", "meta"])  # empty: a reader would fail on them
    factory = DATASETS.get("cifar100")
    assert split_size(factory, "train", str(tmp_path), {}) == 50_000
    assert split_size(factory, "val", str(tmp_path / "cifar-100-python"), {}) == 10_000
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(ConfigError, match="meta"):
        split_size(factory, "train", str(tmp_path), {})
    with pytest.raises(ConfigError, match="expected a directory"):
        split_size(factory, "train", str(tmp_path / "cifar-100-python" / "train"), {})


def test_imagefolder_probe_counts_files_without_decoding(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                (tmp_path / split / cls / f"{i}.png").write_bytes(b"not an image")  # decoding would fail
    factory = DATASETS.get("imagefolder")
    assert split_size(factory, "train", str(tmp_path), {"image_size": 8}) == 6
    assert split_size(factory, "val", str(tmp_path), {}) == 4
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    with pytest.raises(ConfigError, match="found no images"):
        split_size(factory, "train", str(tmp_path / "empty"), {})


# --------------------------------------------------------------------------- config.yaml of a run, train -m --cfg


def test_test_accepts_a_run_dirs_config_yaml(tmp_path: Path, capsys: pytest.CaptureFixture, base) -> None:
    from mixbench.models.classifier import build_classifier

    cfg, _ = base
    run_dir = tmp_path / "digits" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    torch.manual_seed(0)
    model = build_classifier(cfg, num_classes=10, in_chans=1, mean=(0.0,), std=(1.0,))
    torch.save({"state_dict": model.state_dict()}, run_dir / "epoch_1.pth")
    assert cli_main.main(["test", str(run_dir / "config.yaml"), "--checkpoint", str(run_dir / "epoch_1.pth")]) == 0
    assert "(360 images)" in capsys.readouterr().out
    assert (run_dir / "test_metrics.json").is_file()
    assert cli_main.main(["test", str(run_dir / "config.yaml"), "mixup=cutmix", "--checkpoint",
                          str(run_dir / "epoch_1.pth")]) == 2
    assert "key=value overrides" in capsys.readouterr().err
    same, _ = load_config(str(run_dir / "config.yaml"), ["schedule.lr=0.2"])
    assert same["schedule"]["lr"] == 0.2 and same["mixup"] == cfg["mixup"]


def test_multirun_cfg_prints_every_job(capsys: pytest.CaptureFixture) -> None:
    assert cli_main.main(["train", "-m", DIGITS, "mixup=none,cutmix", "seed=0,1", "hydra/launcher=joblib",
                          "--cfg"]) == 0
    out = capsys.readouterr().out
    docs = [d for d in out.split("# job ")[1:]]
    assert [d.splitlines()[0] for d in docs] == ["0: mixup=none seed=0", "1: mixup=none seed=1",
                                                 "2: mixup=cutmix seed=0", "3: mixup=cutmix seed=1"]
    dirs = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("# run dir: ")]
    assert len(set(dirs)) == 4
    assert yaml.safe_load(docs[2].split("\n", 1)[1])["mixup"]["type"] == "cutmix"
    assert cli_main.main(["train", DIGITS, "hydra/launcher=joblib", "--cfg"]) == 2
    assert "add -m" in capsys.readouterr().err


def test_a_run_with_no_full_batch_is_never_recorded(tmp_path: Path) -> None:
    """Past the checks (a caller of ``engine.run.train`` that skipped :func:`check_data`), the loader refuses,
    and the run is recorded as failed, never as finished."""
    from mixbench.engine.run import train

    cfg, _ = load_config(DIGITS, [f"work_dir={tmp_path}", "schedule.epochs=1", "runtime.wandb=off",
                                  "runtime.tensorboard=false", "+data.params.train_size=10"])
    with pytest.raises(ConfigError, match="data.batch_size=64"):
        train(cfg)
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("record.json")]
    assert [r["status"] for r in records] == ["failed"]
    assert "data.batch_size=64" in records[0]["error"]
