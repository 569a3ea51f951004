"""Every config composes and validates; strict errors name key, value and file; the hash is stable."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixbench.config import compose, config_hash, experiment_files, load_config, run_dir_of
from mixbench.config.compose import DEFAULT_CONFIGS, GROUPS
from mixbench.config.validate import semantic_view
from mixbench.errors import ConfigError

EXPERIMENTS = experiment_files()
GROUP_OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((DEFAULT_CONFIGS / g).glob("*.yaml"))]
# options of the regression task: on the digits classification file they are a task mismatch, a config error
OTHER_TASK_OPTIONS = {("task", "regression"), ("loss", "mse"), ("loss", "l1"), ("mixup", "cmixup")}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(DEFAULT_CONFIGS)))
def test_experiment_file_composes_and_validates(path: Path, tmp_path: Path) -> None:
    raw, _ = compose(path)
    overrides = [] if raw["data"]["root"] is None or Path(raw["data"]["root"]).exists() else [f"data.root={tmp_path}"]
    cfg, source = load_config(path, overrides)
    assert cfg["experiment"] and cfg["model"]["backbone"]["type"] and cfg["mixup"]["type"]
    assert source.experiment_file == path
    assert run_dir_of(cfg).startswith(cfg["work_dir"])


@pytest.mark.parametrize("group,option", GROUP_OPTIONS, ids=lambda x: str(x))
def test_group_option_composes_and_validates(group: str, option: str, tmp_path: Path) -> None:
    raw, _ = compose("configs/digits/mixup.yaml", [f"{group}={option}"])
    overrides = [f"{group}={option}"]
    if raw["data"]["root"] is not None and not Path(raw["data"]["root"]).exists():
        overrides.append(f"data.root={tmp_path}")
    if (group, option) in OTHER_TASK_OPTIONS:  # a regression option on the digits classification file
        with pytest.raises(ConfigError, match=r"^(loss|mixup)\.type: .* but task '(classification|regression)'"):
            load_config("configs/digits/mixup.yaml", overrides)
        return
    try:
        cfg, _ = load_config("configs/digits/mixup.yaml", overrides)
    except ConfigError as exc:  # a mixup option may require a backbone other than the digits CNN
        pytest.fail(f"{group}={option}: {exc}")
    assert cfg[group] is not None


def test_default_config_is_digits_mixup() -> None:
    cfg, source = load_config(None)
    assert source.experiment_file == DEFAULT_CONFIGS / "digits" / "mixup.yaml"
    assert cfg["mixup"]["type"] == "mixup" and cfg["data"]["type"] == "digits"


def test_cifar100_r18_follows_openmixup_recipe(tmp_path: Path) -> None:
    for method, alpha in (("vanilla", None), ("mixup", 1.0), ("cutmix", 0.2)):
        cfg, _ = load_config(f"configs/cifar100/r18/{method}.yaml", [f"data.root={tmp_path}"])
        s, d = cfg["schedule"], cfg["data"]
        assert (s["optimizer"], s["lr"], s["momentum"], s["weight_decay"]) == ("sgd", 0.1, 0.9, 1e-4)
        assert (s["lr_schedule"], s["min_lr"], s["warmup_epochs"]) == ("cosine", 0.0, 0.0)
        assert (d["batch_size"], d["crop_padding"], d["hflip"]) == (100, 4, True)
        assert cfg["model"]["backbone"]["type"] == "resnet18_cifar"
        assert cfg["mixup"].get("alpha") == alpha


def test_hash_ignores_logging_keys_but_not_training_keys() -> None:
    base, _ = load_config(None)
    quiet, _ = load_config(None, ["runtime.wandb=off", "runtime.tensorboard=false", "runtime.log_interval=7"])
    other, _ = load_config(None, ["mixup.alpha=0.5"])
    assert config_hash(base) == config_hash(quiet)
    assert config_hash(base) != config_hash(other)
    s1, _ = load_config(None, ["seed=1"])
    assert config_hash(s1) == config_hash(base) and run_dir_of(s1) != run_dir_of(base)
    assert run_dir_of(base) == run_dir_of(load_config(None)[0])  # no clock in the run dir


def test_world_size_is_hashed_and_single_process_hashes_stay() -> None:
    base, _ = load_config(None)
    # d3b9037659: the default config's hash before world sizes were hashed (the run dir shown in the README)
    assert config_hash(base) == config_hash(base, world_size=1) == "d3b9037659"
    assert semantic_view(base, 1) == semantic_view(base)
    assert semantic_view(base, 2) == {**semantic_view(base), "world_size": 2}
    by_size = {n: config_hash(base, world_size=n) for n in (1, 2, 4, 8)}
    assert len(set(by_size.values())) == 4  # per-process batch × world size: every global batch its own run
    assert run_dir_of(base, 2).endswith(f"{by_size[2]}-s0") and run_dir_of(base, 2) != run_dir_of(base)


def test_a_changed_policy_default_gets_a_new_hash_and_no_other_policy_does() -> None:
    """GridMix's default computation changed (behaviour 2: the reference's crop sizing) with no key of its config:
    its configs, also inside a switch, hash anew so an old run dir is never taken as finished; the hashes of the
    policies whose computation did not change stay as recorded."""
    import hashlib
    import json

    def recorded_hash(cfg: dict) -> str:  # the hash before behaviours were hashed
        view = semantic_view(cfg)
        for node in [view["mixup"], *view["mixup"].get("policies", [])]:
            node.pop("behaviour", None)
        text = json.dumps(view, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    grid, _ = load_config(None, ["mixup=gridmix"])
    assert semantic_view(grid)["mixup"]["behaviour"] == 2 and "behaviour" not in grid["mixup"]
    assert config_hash(grid) != recorded_hash(grid)
    nested, _ = load_config(None, ["mixup=switch", "mixup.policies=[{type: mixup}, {type: gridmix}]"])
    assert [p.get("behaviour") for p in semantic_view(nested)["mixup"]["policies"]] == [None, 2]
    assert config_hash(nested) != recorded_hash(nested)
    for name in ("mixup", "cutmix", "fmix", "saliencymix", "switch", "puzzlemix"):
        cfg, _ = load_config(None, [f"mixup={name}"])
        assert config_hash(cfg) == recorded_hash(cfg), name


BAD = [
    (["schedule.epoch=3"], ["schedule.epoch", "epochs"]),
    (["schedule.epochs=abc"], ["schedule.epochs", "abc", "integer"]),
    (["mixup=cutmx"], ["mixup=cutmx", "cutmix"]),
    (["mixup.type=cutmx"], ["mixup.type", "cutmx", "cutmix"]),
    (["mixup.alpah=0.2"], ["mixup.alpah", "alpha", "command line"]),
    (["model.backbone.type=resnet19_cifar"], ["resnet19_cifar", "resnet18_cifar"]),
    (["data.root=/nonexistent/path"], ["data.root", "/nonexistent/path", "does not exist"]),
    (["runtime.amp=bf61"], ["runtime.amp", "bf16"]),
    (["+schedule.foo=1"], ["schedule.foo", "unknown key"]),
    (["loss.label_smoothing=x"], ["loss.label_smoothing", "float"]),
    (["seed=0,1"], ["-m"]),
]


@pytest.mark.parametrize("overrides,words", BAD, ids=lambda x: str(x))
def test_bad_input_is_one_line_config_error(overrides: list[str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("configs/digits/mixup.yaml", overrides)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_typo_inside_a_file_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "configs"
    for g in GROUPS:
        (root / g).mkdir(parents=True)
        for f in (DEFAULT_CONFIGS / g).glob("*.yaml"):
            (root / g / f.name).write_text(f.read_text())
    (root / "mixup" / "typo.yaml").write_text("type: mixup\nalpah: 0.3\n")
    (root / "exp").mkdir()
    exp = root / "exp" / "typo.yaml"
    exp.write_text((DEFAULT_CONFIGS / "digits" / "mixup.yaml").read_text().replace("/mixup: mixup", "/mixup: typo"))
    with pytest.raises(ConfigError) as info:
        load_config(str(exp))
    assert "mixup.alpah" in str(info.value) and str(root / "mixup" / "typo.yaml") in str(info.value)
    exp.write_text(exp.read_text().replace("seed: 0", "seed: 0\nepochz: 3"))
    with pytest.raises(ConfigError) as info:
        load_config(str(exp))
    assert "epochz" in str(info.value) and str(exp) in str(info.value)


def test_missing_config_file_suggests_close_names() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("configs/digits/mixpu.yaml")
    assert "configs/digits/mixup.yaml" in str(info.value)
