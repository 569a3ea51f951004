"""``mixbench visualize``: pictures of a model-free and of a model-reading policy, and which policies read the
model (those are drawn through a classifier built from a digits experiment file)."""

from __future__ import annotations

import re

import pytest
import yaml
from PIL import Image

from mixbench.config.compose import DEFAULT_CONFIGS
from mixbench.cli.visualize import main, weight_text
from mixbench.cli.visualize_model import default_experiment, reads_model, run_model_step
from mixbench.errors import ConfigError
from mixbench.registry import MIXUPS, build

MODEL_READING = {"puzzlemix", "attentivemix", "snapmix", "alignmix", "comixup", "transmix", "tokenmix", "mixpro",
                 "smmix"}


@pytest.mark.parametrize("name", sorted(MIXUPS.module_dict))
def test_reads_model(name):
    option_file = DEFAULT_CONFIGS / "mixup" / f"{name}.yaml"
    cfg = yaml.safe_load(option_file.read_text()) if option_file.is_file() else {"type": name}
    policy = build(MIXUPS, cfg, "mixup")
    assert reads_model(policy) == (name in MODEL_READING)
    if name in MODEL_READING:
        assert default_experiment(name, policy).is_file()


def test_static_picture(tmp_path):
    out = tmp_path / "cutmix.png"
    assert main(["--mixup", "cutmix", "--n", "2", "--size", "32", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.format == "PNG" and img.width > 100 and img.height > 300


def test_model_reading_picture(tmp_path):
    out = tmp_path / "snapmix.png"
    assert main(["--mixup", "snapmix", "--n", "3", "--train-steps", "2", "--out", str(out)]) == 0
    assert Image.open(out).format == "PNG"


def test_relabel_step_is_recorded():
    # TransMix rewrites the label weights from the attention of the training forward: the recorder keeps both
    step = run_model_step("transmix", {"type": "transmix", "switch_prob": 1.0}, experiment=None, checkpoint=None,
                          train_steps=1, n=4, seed=0)
    assert step.final is not step.mixed
    assert step.mixed.inputs.shape == step.inputs.shape
    assert any(float((a - b).abs().max()) > 0 for a, b in zip(step.final.weights, step.mixed.weights))
    text = weight_text(step.final, 0, step.classes, before=step.mixed)
    assert str(int(step.labels[0])) in text.splitlines()[0]


@pytest.mark.parametrize("args,needle", [
    (["--n", "0"], "--n 0"),
    (["--n", "7"], "--n 7"),
    (["--n", "11", "--source", "digits"], "--n 11"),
    (["--size", "0"], "--size 0"),
    (["--config", "no/such.yaml"], "no/such.yaml"),
])
def test_bad_arguments_are_config_errors(tmp_path, args, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        main(["--mixup", "cutmix", *args, "--out", str(tmp_path / "x.png")])


def test_output_folder_is_created(tmp_path):
    out = tmp_path / "new" / "dir" / "cutmix.png"
    assert main(["--mixup", "cutmix", "--n", "2", "--size", "32", "--out", str(out)]) == 0
    assert out.is_file()


def test_checkpoint_with_ema_weights_loads_the_ema_model(tmp_path):
    import torch

    from mixbench.cli.visualize_model import load_checkpoint

    model = torch.nn.Linear(2, 2)
    ema = {f"ema_model.module.{k}": torch.full_like(v, 7.0) for k, v in model.state_dict().items()}
    path = tmp_path / "epoch_1.pth"
    torch.save({"state_dict": {**model.state_dict(), **ema, "ema_model.steps": torch.tensor(3)}}, path)
    load_checkpoint(model, str(path))
    assert bool((model.weight == 7.0).all())
