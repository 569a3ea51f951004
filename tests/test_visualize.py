"""``mixbench visualize``: pictures of a model-free and of a model-reading policy, and which policies read the
model (those are drawn through a classifier built from a digits experiment file); the natural-photo source."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mixbench.cli.visualize import PHOTOS, load_images, main, weight_text
from mixbench.cli.visualize_model import default_experiment, reads_model, run_model_step
from mixbench.config.compose import DEFAULT_CONFIGS
from mixbench.errors import ConfigError
from mixbench.registry import MIXUPS, build

MODEL_READING = {"puzzlemix", "attentivemix", "snapmix", "alignmix", "comixup", "transmix", "tokenmix", "mixpro",
                 "smmix", "automix", "samix", "adautomix", "adamixup"}


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


@pytest.mark.parametrize("n, size", [(1, 32), (4, 224), (len(PHOTOS), 64)])
def test_photo_source_loads_n_images_of_the_size(n, size):
    x, labels, names = load_images("photos", n, size)
    assert x.shape == (n, 3, size, size) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0.1  # real pictures, not blanks
    assert labels.tolist() == list(range(n)) and names == list(PHOTOS[:n])


def test_photos_are_the_scikit_image_photos():
    import skimage.data

    # the astronaut is 512 px square: at 512 px it comes back pixel for pixel
    x, _, _ = load_images("photos", 1, 512)
    assert torch.equal(x[0], torch.as_tensor(skimage.data.astronaut()).permute(2, 0, 1) / 255.0)
    # the coffee photo (400 x 600) is cropped to its centre square: the mean colour survives the resize
    coffee = skimage.data.coffee()[:, 100:500].astype(np.float64) / 255.0
    x, _, _ = load_images("photos", 2, 224)
    assert x[1].mean(dim=(1, 2)).double().numpy() == pytest.approx(coffee.mean(axis=(0, 1)), abs=2e-3)
    camera = load_images("photos", len(PHOTOS), 32)[0][PHOTOS.index("camera")]
    assert torch.equal(camera[0], camera[1]) and torch.equal(camera[0], camera[2])  # grey shown as RGB


def test_photos_without_scikit_image_is_a_config_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "skimage.data", None)  # import fails as if it were not installed
    with pytest.raises(ConfigError, match="--source photos needs scikit-image"):
        load_images("photos", 1, 32)


def test_photo_picture_at_imagenet_size(tmp_path):
    out = tmp_path / "cutmix_photos.png"
    assert main(["--mixup", "cutmix", "--source", "photos", "--n", "2", "--size", "224", "--out", str(out)]) == 0
    img = Image.open(out)
    # each of the 2 x 3 images gets at least its 224 pixels a side
    assert img.format == "PNG" and img.width >= 2 * 224 and img.height >= 3 * 224


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
    (["--source", "skimage"], "--source: expected one of photos, digits"),
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
    from mixbench.cli.visualize_model import load_checkpoint

    model = torch.nn.Linear(2, 2)
    ema = {f"ema_model.module.{k}": torch.full_like(v, 7.0) for k, v in model.state_dict().items()}
    path = tmp_path / "epoch_1.pth"
    torch.save({"state_dict": {**model.state_dict(), **ema, "ema_model.steps": torch.tensor(3)}}, path)
    load_checkpoint(model, str(path))
    assert bool((model.weight == 7.0).all())


# ---------------------------------------------------------------------------- reliability of a trained run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A one-epoch digits run with a held-out split (so its record holds a fitted temperature)."""
    from _spine import ROOT, run_cli

    work = tmp_path_factory.mktemp("run")
    res = run_cli([str(ROOT / "configs/digits/mixup.yaml"), "schedule.epochs=1", "model.backbone.width=8",
                   "data.params.train_size=300", "data.holdout=0.1", f"work_dir={work}", "runtime.tensorboard=false",
                   "runtime.wandb=off", "runtime.progress=off"], cwd=work)
    assert res.returncode == 0, res.stderr[-2000:]
    return next(work.rglob("record.json")).parent


def test_reliability_of_a_run_dir_draws_the_recorded_model_and_temperature(trained_run, tmp_path, monkeypatch):
    import mixbench.evaluation.calibration as calibration

    drawn = []
    real = calibration.draw_reliability
    monkeypatch.setattr(calibration, "draw_reliability",
                        lambda logits, labels, path, title="", temperature=None: (
                            drawn.append((logits, labels, temperature)),
                            real(logits, labels, path, title, temperature)))
    out = tmp_path / "figs" / "reliability.png"
    assert main(["--reliability", str(trained_run), "--out", str(out)]) == 0
    assert Image.open(out).format == "PNG"
    (logits, labels, temperature), = drawn
    rec = json.loads((trained_run / "record.json").read_text())
    # the diagram's model is the run's last epoch: its ECEs are those the record holds for the final epoch
    assert temperature == rec["fitted"]["temperature"]["final"]
    assert len(labels) == 360
    assert calibration.calibration_metrics(logits, labels)["ece"] == pytest.approx(rec["metrics"]["ece"]["final"])
    assert calibration.calibration_metrics(logits / temperature, labels)["ece"] == pytest.approx(
        rec["metrics"]["ece_ts"]["final"])


def test_reliability_of_a_config_needs_a_checkpoint(trained_run, tmp_path):
    config = str(trained_run / "config.yaml")
    with pytest.raises(ConfigError, match="a config needs --checkpoint"):
        main(["--reliability", config])
    out = tmp_path / "r.png"
    assert main(["--reliability", config, "--checkpoint", str(trained_run / "epoch_1.pth"), "--out", str(out)]) == 0
    assert out.is_file()
    with pytest.raises(ConfigError, match="neither a run dir nor a config file"):
        main(["--reliability", str(tmp_path / "absent")])
    with pytest.raises(ConfigError, match="expected --mixup NAME"):
        main([])
