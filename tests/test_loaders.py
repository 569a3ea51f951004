"""Loaders: epoch determinism, crop/flip correctness, resident == DataLoader path, DDP shards."""

import pytest
import torch

from mixbench.datasets import TensorImageDataset, build_loader
from mixbench.datasets.loaders import EpochDataLoader, EpochSampler, ResidentLoader, crop_flip, resize_images
from mixbench.errors import ConfigError


def ramp_dataset(n: int = 37, c: int = 2, h: int = 6, w: int = 5) -> TensorImageDataset:
    """Images whose pixels encode (sample, channel, row, col), so every gather can be checked exactly."""
    base = torch.arange(c * h * w).view(1, c, h, w) + 1  # never 0, so zero padding is recognisable
    images = ((base + 7 * torch.arange(n).view(n, 1, 1, 1)) % 250 + 1).to(torch.uint8)
    return TensorImageDataset(images, torch.arange(n) % 3, 3)


def batches(loader, epoch):
    loader.set_epoch(epoch)
    return [(b["inputs"].clone(), b["labels"].clone()) for b in loader]


def test_crop_flip_identity_and_known_offsets():
    img = torch.arange(1, 13, dtype=torch.uint8).view(1, 1, 3, 4)
    zero = torch.zeros(1, dtype=torch.int64)
    one = torch.ones(1, dtype=torch.int64)
    assert torch.equal(crop_flip(img, one, one, zero, 1), img)
    # offset (0, 0) with padding 1: shifted down-right by one, zeros enter at the top and left
    expected = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3], [0, 5, 6, 7]], dtype=torch.uint8).view(1, 1, 3, 4)
    assert torch.equal(crop_flip(img, zero, zero, zero, 1), expected)
    # offset (2, 2): shifted up-left
    two = 2 * one
    expected = torch.tensor([[6, 7, 8, 0], [10, 11, 12, 0], [0, 0, 0, 0]], dtype=torch.uint8).view(1, 1, 3, 4)
    assert torch.equal(crop_flip(img, two, two, zero, 1), expected)
    assert torch.equal(crop_flip(img, zero, zero, one, 0), img.flip(-1))


def test_crop_flip_matches_pad_crop_flip_reference():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (16, 3, 8, 8), generator=g, dtype=torch.uint8)
    p = 3
    dy, dx = torch.randint(0, 2 * p + 1, (16,), generator=g), torch.randint(0, 2 * p + 1, (16,), generator=g)
    flip = torch.randint(0, 2, (16,), generator=g)
    out = crop_flip(imgs, dy, dx, flip, p)
    padded = torch.nn.functional.pad(imgs, (p, p, p, p))
    for i in range(16):
        ref = padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
        ref = ref.flip(-1) if flip[i] else ref
        assert torch.equal(out[i], ref)


@pytest.mark.parametrize("resident", ["device", "dataloader"])
def test_epoch_determinism(resident):
    ds = ramp_dataset()
    make = lambda: build_loader(ds, train=True, batch_size=8, resident=resident, crop_padding=2,  # noqa: E731
                                hflip=True, seed=3)
    first, again = make(), make()
    assert len(first) == 37 // 8
    e1 = batches(first, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(e1, batches(again, 1)))
    e2 = batches(first, 2)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(e1, e2))
    for x, y in e1:
        assert x.dtype == torch.uint8 and y.dtype == torch.int64 and x.shape == (8, 2, 6, 5)


def test_resident_and_dataloader_paths_are_identical():
    ds = ramp_dataset()
    kw = dict(train=True, batch_size=8, crop_padding=1, hflip=True, seed=5)
    res = build_loader(ds, resident="device", **kw)
    dl = build_loader(ds, resident="dataloader", num_workers=1, **kw)
    assert isinstance(res, ResidentLoader) and isinstance(dl, EpochDataLoader)
    assert isinstance(res, torch.utils.data.DataLoader) and isinstance(dl, torch.utils.data.DataLoader)
    for a, b in zip(batches(res, 4), batches(dl, 4)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_val_loader_is_ordered_complete_and_unaugmented():
    ds = ramp_dataset()
    loader = build_loader(ds, train=False, batch_size=8, crop_padding=4, hflip=True)
    xs, ys = zip(*batches(loader, 0))
    assert len(loader) == 5
    assert torch.equal(torch.cat(xs), ds.images) and torch.equal(torch.cat(ys), ds.labels)


@pytest.mark.parametrize("world_size,drop_last", [(2, False), (3, False), (3, True)])
def test_ddp_shards_disjoint_and_covering(world_size, drop_last):
    n = 37
    shards = []
    for rank in range(world_size):
        s = EpochSampler(n, shuffle=True, seed=1, rank=rank, world_size=world_size, drop_last=drop_last)
        s.set_epoch(7)
        shards.append(s.plan()[0])
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1
    allidx = torch.cat(shards)
    if drop_last:  # truncated to a multiple of world_size: disjoint, nothing repeated
        assert allidx.unique().numel() == allidx.numel() == (n // world_size) * world_size
    else:  # padded by wrapping: covers everything, only the padding repeats
        assert set(allidx.tolist()) == set(range(n))
        assert allidx.numel() - n == (-n) % world_size
    # the union of the shards is the single-process epoch order
    single = EpochSampler(n, shuffle=True, seed=1, drop_last=drop_last)
    single.set_epoch(7)
    interleaved = torch.stack(shards, 1).reshape(-1)
    m = min(n, interleaved.numel())
    assert torch.equal(interleaved[:m], single.plan()[0][:m])


def test_resident_loader_places_batches_on_device():
    ds = ramp_dataset()
    loader = build_loader(ds, train=True, batch_size=4, device="cpu", resident="auto")
    assert isinstance(loader, ResidentLoader)
    batch = next(iter(loader))
    assert batch["inputs"].device.type == "cpu"


@pytest.mark.parametrize("train", [True, False])
def test_resize_same_on_both_paths_and_after_the_crop(train):
    ds = ramp_dataset()
    kw = dict(train=train, batch_size=8, crop_padding=1, hflip=True, seed=3, resize=12)
    res, dl = build_loader(ds, resident="device", **kw), build_loader(ds, resident="dataloader", **kw)
    plain = build_loader(ds, resident="device", **(kw | {"resize": None}))
    for a, b, p in zip(batches(res, 1), batches(dl, 1), batches(plain, 1)):
        assert a[0].shape[1:] == (2, 12, 12) and a[0].dtype == torch.uint8
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        # the resize is applied to the cropped/flipped batch, bilinear, rounded back to uint8
        ref = torch.nn.functional.interpolate(p[0].float(), size=(12, 12), mode="bilinear", align_corners=False)
        assert torch.equal(a[0], ref.round().clamp(0, 255).to(torch.uint8))
    assert dl.dataset.image_size == (12, 12)


def test_resize_images_identity_and_constant():
    x = torch.full((2, 3, 4, 4), 77, dtype=torch.uint8)
    assert resize_images(x, None) is x and resize_images(x, 4) is x
    assert torch.equal(resize_images(x, 9), torch.full((2, 3, 9, 9), 77, dtype=torch.uint8))


@pytest.mark.parametrize("kwargs", [dict(resident="gpu"), dict(batch_size=0), dict(crop_padding=-1),
                                    dict(resize=0)])
def test_bad_loader_options_are_config_errors(kwargs):
    args = dict(train=True, batch_size=4) | kwargs
    with pytest.raises(ConfigError):
        build_loader(ramp_dataset(), **args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resident_on_cuda_matches_cpu():
    ds = ramp_dataset()
    kw = dict(train=True, batch_size=8, crop_padding=2, hflip=True, seed=2, resident="device")
    cpu, gpu = build_loader(ds, device="cpu", **kw), build_loader(ds, device="cuda", **kw)
    for a, b in zip(batches(cpu, 0), batches(gpu, 0)):
        assert b[0].is_cuda and torch.equal(a[0], b[0].cpu()) and torch.equal(a[1], b[1].cpu())


def test_file_dataset_uses_dataloader_workers(tmp_path):
    from PIL import Image

    from mixbench.registry import DATASETS, import_components

    import_components()
    for split in ("train", "val"):
        for c, cls in enumerate(["a", "b"]):
            for k in range(3):
                (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (12, 12), (100 * c, 0, 0)).save(tmp_path / split / cls / f"{k}.png")
    ds = DATASETS.get("imagefolder")("train", root=str(tmp_path), image_size=8, resize=8)
    loader = build_loader(ds, train=True, batch_size=4, resident="auto", num_workers=2, crop_padding=1, seed=0)
    assert isinstance(loader, EpochDataLoader) and len(loader) == 1
    with pytest.raises(ConfigError, match="in-memory"):
        build_loader(ds, train=True, batch_size=4, resident="device")
    batch = batches(loader, 0)[0]
    assert batch[0].shape == (4, 3, 8, 8) and batch[0].dtype == torch.uint8
    # the red channel still encodes the label wherever the crop did not bring in zero padding
    assert torch.equal(batch[0][:, 0, 3, 3].long(), 100 * batch[1])
