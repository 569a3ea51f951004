"""ImageNet R-50 recipe: RandomResizedCrop against torchvision, its seeding on both loader paths, the config key's
errors and hash, the r50 backbone's mix points, the configs' recipe values, and a fake ImageNet trained end to end
with the AutoMix config."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import torch
import yaml
from _spine import ROOT, run_cli
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from mixbench.config import load_config
from mixbench.config.validate import config_hash
from mixbench.datasets.augment import ResizedCrop
from mixbench.datasets.base import TensorImageDataset
from mixbench.datasets.loaders import build_loader, crop_seed
from mixbench.engine.report import read_metrics
from mixbench.errors import ConfigError
from mixbench.registry import BACKBONES, DATASETS, build, import_components
from mixbench.results.record import read_record

import_components()
IMAGENET_CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs" / "imagenet" / "r50").glob("*.yaml"))
# Small sizes for CPU: 64 px crops of files of a few sizes, so the crop draws from images of their own shape.
FAKE_SIZES = [(80, 60), (50, 90), (72, 72)]


def _fake_imagenet(root: Path, classes: int = 2, per_class: int = 4) -> Path:
    """``<root>/{train,val}/<wnid>/*.png`` (docs/datasets.md's ImageNet layout) with random pixels."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                h, w = FAKE_SIZES[i % len(FAKE_SIZES)]
                pixels = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g).numpy()
                Image.fromarray(pixels).save(folder / f"img_{i}.png")
    return root


def test_crop_is_torchvisions_random_resized_crop():
    """Same seed → the box torchvision's RandomResizedCrop draws and the pixels its transform returns."""
    crop = ResizedCrop.from_config({"size": 24})
    image = torch.randint(0, 256, (3, 41, 67), dtype=torch.uint8)
    ref_transform = T.RandomResizedCrop(24, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                        interpolation=T.InterpolationMode.BICUBIC, antialias=True)
    for seed in range(20):
        torch.manual_seed(seed)
        box = T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
        assert crop.params(41, 67, seed) == box
        top, left, h, w = box
        want = TF.resized_crop(image, top, left, h, w, [24, 24], interpolation=T.InterpolationMode.BICUBIC,
                               antialias=True)
        assert torch.equal(crop(image, seed), want)
        torch.manual_seed(seed)
        assert torch.equal(crop(image, seed), ref_transform(image))


def test_crop_draws_leave_the_callers_rng_and_follow_their_ranges():
    crop = ResizedCrop.from_config({"size": 8, "scale": [0.25, 0.5], "ratio": [1.0, 1.0]})
    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    boxes = [crop.params(100, 100, s) for s in range(50)]
    assert torch.equal(torch.rand(1), before)
    for top, left, h, w in boxes:
        assert h == w and 0.25 * 1e4 - 200 <= h * w <= 0.5 * 1e4 + 200  # area within the scale (rounding)
        assert 0 <= top <= 100 - h and 0 <= left <= 100 - w
    assert len(set(boxes)) > 40


def _stored(n: int = 12, side: int = 20) -> TensorImageDataset:
    g = torch.Generator().manual_seed(1)
    return TensorImageDataset(torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g),
                              torch.arange(n) % 3, 3)


def _epoch(loader, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    loader.set_epoch(epoch)
    batches = list(loader)
    return torch.cat([b["inputs"] for b in batches]), torch.cat([b["labels"] for b in batches])


def test_both_loader_paths_crop_alike_and_per_seed_epoch():
    ds, crop = _stored(), ResizedCrop.from_config({"size": 16})
    kw = dict(train=True, batch_size=4, hflip=True, seed=5, resized_crop=crop)
    resident, files = build_loader(ds, resident="device", **kw), build_loader(ds, resident="dataloader", **kw)
    x0, y0 = _epoch(resident, 0)
    assert x0.shape == (12, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(_epoch(files, 0), (x0, y0)))
    assert torch.equal(_epoch(build_loader(ds, resident="device", **kw), 0)[0], x0)  # same (seed, epoch)
    assert not torch.equal(_epoch(resident, 1)[0], x0)  # another epoch, other boxes
    # each image is its crop (then the plan's flip) of the stored image, seeded by (seed, epoch, index)
    resident.sampler.set_epoch(0)
    order, _, _, flip = resident.sampler.plan()
    for pos, (i, f) in enumerate(zip(order.tolist(), flip.tolist())):
        want = crop(ds.images[i], crop_seed(5, 0, i))
        assert torch.equal(x0[pos], want.flip(-1) if f else want)
    assert not torch.equal(_epoch(build_loader(ds, resident="device", **{**kw, "seed": 6}), 0)[0], x0)


def test_file_dataset_crops_from_the_decoded_file_and_val_is_center_cropped(tmp_path):
    from PIL import Image

    root = _fake_imagenet(tmp_path / "inet")
    train = DATASETS.get("imagenet")("train", root=str(root), image_size=32, resize=36)
    crop = ResizedCrop.from_config({"size": 32})
    loader = build_loader(train, train=True, batch_size=8, resident="auto", seed=2, resized_crop=crop)
    assert not loader.resident
    x, _ = _epoch(loader, 0)
    order = loader.sampler.plan()[0].tolist()
    for pos, i in enumerate(order):
        with Image.open(train.samples[i][0]) as img:
            full = TF.pil_to_tensor(img.convert("RGB"))
        assert full.shape[1:] in [torch.Size(s) for s in FAKE_SIZES]
        assert torch.equal(x[pos], crop(full, crop_seed(2, 0, i)))
    val = DATASETS.get("imagenet")("val", root=str(root), image_size=32, resize=36)
    vx, _ = _epoch(build_loader(val, train=False, batch_size=8, resident="auto", resized_crop=crop), 0)
    assert torch.equal(vx, torch.stack([val[i][0] for i in range(len(val))]))  # eval: resize → center crop


BAD_CROPS = [
    ("data.random_resized_crop.scale=[0.5,0.1]", "data.random_resized_crop.scale"),
    ("data.random_resized_crop.scale=[0.5,1.5]", "data.random_resized_crop.scale"),
    ("data.random_resized_crop.ratio=[0,1]", "data.random_resized_crop.ratio"),
    ("data.random_resized_crop.size=0", "data.random_resized_crop.size"),
    ("data.random_resized_crop.interpolation=lanczos", "data.random_resized_crop.interpolation"),
    ("+data.random_resized_crop.sise=3", "data.random_resized_crop.sise"),
    ("data.crop_padding=4", "data.crop_padding=0"),
]


@pytest.mark.parametrize("override,words", BAD_CROPS)
def test_bad_crop_is_one_line_config_error(override, words, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config("configs/imagenet/r50/vanilla.yaml", [f"data.root={tmp_path}", override])
    msg = str(info.value)
    assert "\n" not in msg and words in msg and "imagenet" in msg, msg


def test_crop_enters_the_hash_only_when_set(tmp_path):
    cfg, _ = load_config("configs/imagenet/r50/vanilla.yaml", [f"data.root={tmp_path}"])
    unset, _ = load_config("configs/imagenet/r50/vanilla.yaml",
                           [f"data.root={tmp_path}", "data.random_resized_crop=null"])
    other, _ = load_config("configs/imagenet/r50/vanilla.yaml",
                           [f"data.root={tmp_path}", "data.random_resized_crop.scale=[0.35,1.0]"])
    assert len({config_hash(cfg), config_hash(unset), config_hash(other)}) == 3
    without = {**unset, "data": {k: v for k, v in unset["data"].items() if k != "random_resized_crop"}}
    assert config_hash(without) == config_hash(unset)  # unset = absent: older configs keep their hashes


@pytest.mark.parametrize("path", IMAGENET_CONFIGS)
def test_imagenet_configs_follow_the_recipe(path, tmp_path):
    cfg, _ = load_config(path, [f"data.root={tmp_path}"])
    s, d = cfg["schedule"], cfg["data"]
    assert (s["optimizer"], s["lr"], s["momentum"], s["weight_decay"], s["min_lr"], s["epochs"],
            s["warmup_epochs"]) == ("sgd", 0.1, 0.9, 1e-4, 0.0, 100, 0)
    assert (d["type"], d["batch_size"], d["crop_padding"], d["hflip"]) == ("imagenet", 64, 0, True)
    assert d["params"] == {"image_size": 224, "resize": 256}
    assert ResizedCrop.from_config(d["random_resized_crop"]) == ResizedCrop(224, (0.08, 1.0), (0.75, 4 / 3), "bicubic")
    assert cfg["model"]["backbone"] == {"type": "torchvision", "name": "resnet50", "zero_init_residual": True}
    m = cfg["mixup"]
    if m["type"] in ("automix", "samix"):
        assert (m["alpha"], m["mask_layer"], m["mask_loss"], m["mask_loss_end"], m["end_momentum"], m["lr"],
                m["min_lr"]) == (2.0, 2, 0.1, 0.0, 0.99999, 0.1, 0.001)
        assert m["lam_concat"] == (m["type"] == "automix") and m["x_qk_concat"] == (m["type"] == "samix")
        assert m["upsampling"] == {"automix": "nearest", "samix": "bilinear"}[m["type"]]


def test_r50_mix_points_are_the_imagenet_stages():
    cfg, _ = load_config("configs/imagenet/r50/mixup.yaml", ["data.root=/"])
    torch.manual_seed(0)
    net = build(BACKBONES, cfg["model"]["backbone"], "model.backbone").eval()
    shapes = []
    hooks = [p.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape))) for p in net.mix_points()]
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 64, 64))
    for h in hooks:
        h.remove()
    # 7x7 stride-2 stem + max-pool: 64 px → 16 at layer1, then /2 per stage (224 px: 56, 28, 14, 7)
    assert shapes == [(2, 256, 16, 16), (2, 512, 8, 8), (2, 1024, 4, 4), (2, 2048, 2, 2)]
    assert out.shape == (2, 2048, 2, 2) and net.num_features == 2048
    blocks = [b for layer in net.mix_points() for b in layer]
    assert len(blocks) == 16 and all(not b.bn3.weight.detach().any() for b in blocks)  # zero-init residual


@pytest.mark.slow
def test_fake_imagenet_trains_one_epoch_with_the_automix_config(tmp_path):
    """configs/imagenet/r50/automix.yaml on a fake ImageNet at 64 px: the real CLI, R-50 and the MixBlock on
    stage 3, one epoch of 2 steps, a finished record."""
    root = _fake_imagenet(tmp_path / "inet")
    proc = run_cli(["configs/imagenet/r50/automix.yaml", f"data.root={root}", "data.batch_size=4",
                    "data.val_batch_size=8", "data.num_workers=0", "data.params.image_size=64",
                    "data.params.resize=73", "data.random_resized_crop.size=64", "schedule.epochs=1",
                    "runtime.tensorboard=false", "runtime.wandb=off", "runtime.progress=off",
                    "runtime.log_interval=1", f"work_dir={tmp_path / 'work'}"], ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = glob.glob(str(tmp_path / "work" / "imagenet_r50" / "*"))
    rec = read_record(Path(run_dir) / "record.json")
    assert rec["status"] == "finished" and rec["method"] == "automix"
    assert 0.0 <= rec["metrics"]["top1"]["final"] <= 1.0
    rows = [r for r in read_metrics(str(Path(run_dir) / "metrics.jsonl")) if r["kind"] == "train"]
    assert len(rows) == 2  # 8 training files, batch 4
    for row in rows:  # the learned mixer's own step: one term per loss, the mask loss annealed from 0.1
        assert {"loss_mix_q", "loss_one_q", "loss_mix_k", "loss_mask"} <= set(row), row
    saved = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    assert saved["data"]["random_resized_crop"]["size"] == 64 and saved["mixup"]["lam_concat"] is True


def test_bad_crop_exits_2_before_any_run_dir(tmp_path):
    root = _fake_imagenet(tmp_path / "inet")
    proc = run_cli(["configs/imagenet/r50/vanilla.yaml", f"data.root={root}", f"work_dir={tmp_path / 'work'}",
                    "data.random_resized_crop.scale=[0.9,0.2]"], ROOT, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "data.random_resized_crop.scale" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "work").exists()
