"""RandAugment in the loaders: seeded per (seed, epoch, index) on both paths, changes images, train only,
leaves the global RNG alone, and the config key leaves older config hashes unchanged when unset."""

import pytest
import torch

from mixbench.config import load_config
from mixbench.config.validate import config_hash
from mixbench.datasets import TensorImageDataset, build_loader
from mixbench.datasets.loaders import SeededRandAugment, randaugment_seed
from mixbench.errors import ConfigError


def photo_dataset(n: int = 24, size: int = 16) -> TensorImageDataset:
    """Textured RGB images (a seeded random field plus gradients), so colour and geometry ops show."""
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 200, size)
    base = ramp.view(1, 1, 1, size) + ramp.view(1, 1, size, 1) * 0.3
    noise = torch.randint(0, 55, (n, 3, size, size), generator=gen)
    images = (base + noise).clamp(0, 255).to(torch.uint8)
    return TensorImageDataset(images, torch.arange(n) % 4, 4)


def epoch_batches(loader, epoch):
    loader.set_epoch(epoch)
    return torch.cat([b["inputs"] for b in loader])


def make(ds, resident, m=9, **kw):
    return build_loader(ds, train=True, batch_size=8, resident=resident, crop_padding=2, hflip=True, seed=3,
                        randaugment=m, **kw)


def test_same_seed_same_epoch_same_images_on_both_paths():
    ds = photo_dataset()
    dev = epoch_batches(make(ds, "device"), 1)
    again = epoch_batches(make(ds, "device"), 1)
    workers = epoch_batches(make(ds, "dataloader", num_workers=2), 1)
    assert torch.equal(dev, again)
    assert torch.equal(dev, workers)  # resume at epoch 1 on either path sees the same augmentations


def test_changes_images_and_differs_between_epochs():
    ds = photo_dataset()
    plain = build_loader(ds, train=True, batch_size=8, resident="device", crop_padding=2, hflip=True, seed=3)
    base, aug = epoch_batches(plain, 0), epoch_batches(make(ds, "device"), 0)
    changed = (base != aug).flatten(1).any(1).float().mean()
    assert changed > 0.8  # an identity op can be drawn twice for a few images
    loader = make(ds, "device")
    assert not torch.equal(epoch_batches(loader, 0), epoch_batches(loader, 1))
    assert epoch_batches(make(ds, "device", m=0), 0).shape == base.shape


def test_global_rng_untouched_and_val_unaugmented():
    ds = photo_dataset()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    epoch_batches(make(ds, "device"), 0)
    assert torch.equal(torch.get_rng_state(), state)
    val = build_loader(ds, train=False, batch_size=8, resident="device", randaugment=9)
    assert torch.equal(torch.cat([b["inputs"] for b in val]), ds.tensors()[0])


def test_seeded_op_is_a_function_of_the_seed():
    img = photo_dataset(1)[0][0]
    op = SeededRandAugment(7)
    seeds = [randaugment_seed(0, e, 5) for e in range(4)]
    assert len(set(seeds)) == 4 and randaugment_seed(0, 1, 5) == seeds[1]
    assert torch.equal(op(img, seeds[2]), op(img, seeds[2]))


def test_magnitude_checked():
    with pytest.raises(ConfigError, match="data.randaugment"):
        build_loader(photo_dataset(), train=True, batch_size=8, randaugment=31)


def test_config_key_and_hash():
    cfg, _ = load_config("configs/digits/mixup.yaml")
    assert cfg["data"]["randaugment"] is None
    legacy = dict(cfg, data={k: v for k, v in cfg["data"].items() if k != "randaugment"})
    assert config_hash(cfg) == config_hash(legacy)
    aug, _ = load_config("configs/digits/mixup.yaml", ["data.randaugment=7"])
    assert aug["data"]["randaugment"] == 7 and config_hash(aug) != config_hash(cfg)
