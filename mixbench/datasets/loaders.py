"""Loaders that turn an :class:`ImageDataset` into batches of ``{"inputs": images, "labels": labels}`` (interface A).

Labels keep the dataset's dtype and shape (class indices, or float target vectors); a dataset with ``groups``
adds ``"groups"`` (N,) int64 to each batch on the device-resident path.

Two paths with the same order and the same augmentation, bit for bit:

* **device-resident** (:class:`ResidentLoader`): the whole uint8 split is copied to the training device once;
  every batch is a gather on the device followed by a batched random crop (zero padding) and horizontal flip
  on the device. No worker processes, no per-batch host→device copies, no host synchronisation.
* **DataLoader** (:class:`EpochDataLoader`): a regular :class:`torch.utils.data.DataLoader` with workers that
  crops and flips each image on the CPU; for data that is not in memory (ImageFolder) or too big for the device.

Both are driven by :class:`EpochSampler`: for each epoch it draws, from a CPU generator seeded by
``(seed, epoch)`` only, a permutation of the whole dataset and one crop offset and flip bit per position, then
gives rank ``r`` of ``world_size`` the positions ``r, r + world_size, ...`` (padded by wrapping around like
:class:`~torch.utils.data.DistributedSampler`, or truncated when ``drop_last``). Resuming at an epoch therefore
reproduces the batches exactly, and the ranks' shards are disjoint and cover the epoch.

Optional RandAugment (``randaugment=m``: torchvision's ``transforms.v2.RandAugment(num_ops=2, magnitude=m)``)
runs after the crop and flip and before the resize, per image, on both paths (CPU workers, or image by image
on the device for the resident path). Each image's draw is seeded by ``(seed, epoch, dataset index)`` through
:func:`randaugment_seed`; torchvision draws from the global torch RNG, so every call runs inside
``torch.random.fork_rng`` seeded with that value, which leaves the caller's RNG untouched.

Optional RandomResizedCrop (``random_resized_crop``: :class:`~mixbench.datasets.augment.ResizedCrop`, the
ImageNet train crop) replaces the padded crop: it crops from the image the dataset holds in full (a file
dataset's decoded file), seeded like RandAugment by ``(seed, epoch, dataset index)``, before the flip.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from mixbench.datasets.augment import ResizedCrop, item_seed
from mixbench.datasets.base import ImageDataset
from mixbench.errors import ConfigError

RESIDENT_MODES = ("auto", "device", "dataloader")
# "auto" keeps a split on the accelerator only while it takes at most this share of the device's memory.
RESIDENT_MEMORY_SHARE = 0.25


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed that depends only on ``(seed, epoch)`` (stable across processes and platforms)."""
    digest = hashlib.sha256(f"mixbench-loader:{int(seed)}:{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def randaugment_seed(seed: int, epoch: int, index: int) -> int:
    """The RandAugment seed of dataset item ``index`` in ``epoch``: depends on nothing else (not the rank, the
    batch or the worker), so a resumed run and both loader paths draw the same operations."""
    return item_seed("randaugment", seed, epoch, index)


def crop_seed(seed: int, epoch: int, index: int) -> int:
    """The RandomResizedCrop seed of dataset item ``index`` in ``epoch`` (a stream of its own)."""
    return item_seed("resized-crop", seed, epoch, index)


class SeededRandAugment:
    """torchvision's RandAugment (``num_ops`` operations of ``magnitude`` out of 31 bins) applied to one uint8
    C×H×W image with an explicit seed, without touching the global RNG of the caller."""

    def __init__(self, magnitude: int, num_ops: int = 2):
        from torchvision.transforms import v2

        if not 0 <= int(magnitude) <= 30:
            raise ConfigError(f"data.randaugment: expected null or a magnitude in 0..30, got {magnitude}")
        self.magnitude, self.num_ops = int(magnitude), int(num_ops)
        self.op = v2.RandAugment(num_ops=self.num_ops, magnitude=self.magnitude)

    def __call__(self, image: Tensor, seed: int) -> Tensor:
        # torchvision draws the operations and signs from the CPU generator, also for device images
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.op(image)

    def batch(self, images: Tensor, seeds: list[int]) -> Tensor:
        """Image by image where the batch lies (each image its own operations), restacked."""
        return torch.stack([self(img, s) for img, s in zip(images, seeds)])


def crop_flip(images: Tensor, dy: Tensor, dx: Tensor, flip: Tensor, padding: int) -> Tensor:
    """Batched random crop with zero padding, then horizontal flip, as one gather.

    Equivalent to zero-padding each image by ``padding`` on every side, cropping the original size at offset
    ``(dy, dx)`` in ``[0, 2·padding]`` and mirroring left-right where ``flip`` is 1 (torchvision's
    ``RandomCrop(size, padding)`` followed by ``RandomHorizontalFlip``). ``dy = dx = padding`` with no flip is
    the identity.

    Args:
        images: N×C×H×W (any dtype), on any device.
        dy, dx: (N,) integer offsets, on the same device.
        flip: (N,) 0/1, on the same device.
        padding: the zero padding on each side.
    """
    n, c, h, w = images.shape
    dev = images.device
    rows = dy.view(n, 1) - padding + torch.arange(h, device=dev)  # source row of every output row
    cols = dx.view(n, 1) - padding + torch.arange(w, device=dev)
    cols = torch.where(flip.view(n, 1).bool(), cols.flip(1), cols)
    valid = ((rows >= 0) & (rows < h)).view(n, 1, h, 1) & ((cols >= 0) & (cols < w)).view(n, 1, 1, w)
    # Two separable gathers (rows, then columns) with broadcast indices: no padded copy, no int64 index of
    # the batch's size; out-of-range positions are clamped, then zeroed like RandomCrop's zero fill.
    out = images.gather(2, rows.clamp(0, h - 1).view(n, 1, h, 1).expand(n, c, h, w))
    out = out.gather(3, cols.clamp(0, w - 1).view(n, 1, 1, w).expand(n, c, h, w))
    return out * valid.to(out.dtype)


def resize_images(images: Tensor, size: int | None) -> Tensor:
    """Bilinear resize of a uint8 N×C×H×W batch to ``size``×``size``, back to uint8 (round half to even, clamp).

    Used to feed 32×32 CIFAR images to models built for 224 px (OpenMixup's CIFAR-100 ViT recipe); the batch
    is resized where it lies (on the device for the resident path). ``None`` or the current size is a no-op.
    Bilinear without antialiasing (``align_corners=False``): the same operation on both loader paths.
    """
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


class EpochSampler(Sampler):
    """Per-epoch seeded order and augmentation parameters, sharded by rank (see the module docstring).

    Iterating yields ``(index, dy, dx, flip, epoch)`` tuples of ints for this rank (the epoch seeds
    RandAugment in the workers); :meth:`plan` returns the first four as int64 tensors.
    """

    def __init__(self, size: int, *, shuffle: bool, crop_padding: int = 0, hflip: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.size, self.shuffle = int(size), bool(shuffle)
        self.crop_padding, self.hflip = int(crop_padding), bool(hflip)
        self.seed, self.rank, self.world_size, self.drop_last = int(seed), int(rank), int(world_size), drop_last
        self.epoch = 0
        if drop_last and self.size < world_size:
            raise ConfigError(f"data: {self.size} samples cannot be split over {world_size} ranks with drop_last")
        per_rank = self.size // world_size if drop_last else math.ceil(self.size / world_size)
        self.num_samples, self.total = per_rank, per_rank * world_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation :meth:`plan` returns."""
        self.epoch = int(epoch)

    def plan(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(indices, dy, dx, flip)`` int64 CPU tensors of length :attr:`num_samples` for this rank."""
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=gen) if self.shuffle else torch.arange(self.size)
        if self.total > self.size:  # pad by wrapping around so every rank has the same length
            order = order.repeat(math.ceil(self.total / self.size))
        order = order[: self.total]
        p = self.crop_padding
        if p > 0:
            dy = torch.randint(0, 2 * p + 1, (self.total,), generator=gen)
            dx = torch.randint(0, 2 * p + 1, (self.total,), generator=gen)
        else:
            dy = dx = torch.zeros(self.total, dtype=torch.int64)
        flip = (torch.randint(0, 2, (self.total,), generator=gen) if self.hflip
                else torch.zeros(self.total, dtype=torch.int64))
        shard = slice(self.rank, self.total, self.world_size)
        return order[shard], dy[shard], dx[shard], flip[shard]

    def __iter__(self) -> Iterator[tuple[int, int, int, int, int]]:
        plan = [t.tolist() for t in self.plan()]
        return iter(zip(*plan, [self.epoch] * len(plan[0])))

    def __len__(self) -> int:
        return self.num_samples


class AugmentedDataset(ImageDataset):
    """Wraps a dataset so that ``view[(i, dy, dx, flip, epoch)]`` is ``dataset[i]`` cropped (padded crop, or
    RandomResizedCrop of the uncropped image), flipped, RandAugment-ed (seeded by ``(seed, epoch, i)``) and
    resized.

    The DataLoader path indexes it with the keys of an :class:`EpochSampler`; the crop is the same
    :func:`crop_flip` (and :class:`ResizedCrop`) the resident path applies to whole batches.
    """

    def __init__(self, dataset: ImageDataset, crop_padding: int = 0, hflip: bool = False,
                 resize: int | None = None, randaugment: int | None = None, seed: int = 0,
                 resized_crop: ResizedCrop | None = None):
        self.base, self.crop_padding, self.hflip = dataset, int(crop_padding), bool(hflip)
        self.resize, self.seed, self.resized_crop = resize, int(seed), resized_crop
        self.randaugment = None if randaugment is None else SeededRandAugment(randaugment)
        for attr in ("num_classes", "image_size", "in_chans", "mean", "std", "classes"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))
        if resized_crop is not None:
            self.image_size = (resized_crop.size, resized_crop.size)
        if resize is not None:
            self.image_size = (int(resize), int(resize))

    def __len__(self) -> int:
        return len(self.base)

    def tensors(self) -> tuple[Tensor, Tensor] | None:
        return self.base.tensors()

    def __getitem__(self, key: int | tuple[int, ...]) -> tuple[Tensor, Tensor | int]:
        i, dy, dx, flip, *rest = key if isinstance(key, tuple) else (key, self.crop_padding, self.crop_padding, 0)
        if self.resized_crop is not None and rest:
            image, label = self.base.uncropped(i)
            image = self.resized_crop(image, crop_seed(self.seed, rest[0], i))
        else:
            image, label = self.base[i]
        if self.crop_padding > 0 or (self.hflip and flip):
            image = crop_flip(image.unsqueeze(0), torch.tensor([dy]), torch.tensor([dx]), torch.tensor([flip]),
                              self.crop_padding)[0]
        if self.randaugment is not None and rest:
            image = self.randaugment(image, randaugment_seed(self.seed, rest[0], i))
        if self.resize is not None:
            image = resize_images(image.unsqueeze(0), self.resize)[0]
        return image, label


def collate(samples: list[tuple[Tensor, Tensor | int]]) -> dict[str, Tensor]:
    """Stack ``(image, label)`` pairs into the loader batch dict (labels keep their dtype and shape)."""
    images, labels = zip(*samples)
    return {"inputs": torch.stack(images), "labels": torch.stack([torch.as_tensor(y) for y in labels])}


class EpochDataLoader(DataLoader):
    """The DataLoader path: worker processes decode/crop/flip on the CPU; batches come back pinned on CUDA."""

    def __init__(self, dataset: ImageDataset, *, sampler: EpochSampler, batch_size: int, drop_last: bool,
                 num_workers: int = 0, pin_memory: bool = False, crop_padding: int = 0, hflip: bool = False,
                 resize: int | None = None, randaugment: int | None = None,
                 resized_crop: ResizedCrop | None = None):
        view = AugmentedDataset(dataset, crop_padding, hflip, resize, randaugment, sampler.seed, resized_crop)
        super().__init__(view, batch_size=batch_size,
                         sampler=sampler,
                         drop_last=drop_last, num_workers=num_workers, collate_fn=collate,
                         pin_memory=pin_memory, persistent_workers=num_workers > 0)
        self.resident = False

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch's order and augmentation (call before iterating; mmengine calls the sampler's)."""
        self.sampler.set_epoch(epoch)


class ResidentLoader(DataLoader):
    """The device-resident path: the whole uint8 split on ``device``, batches gathered and augmented there.

    It subclasses :class:`DataLoader` (so mmengine accepts it and finds ``sampler.set_epoch``) but replaces
    iteration: per epoch the sampler's plan is copied to the device once; each batch is then a slice of the
    plan, a gather of images and labels and one :func:`crop_flip`, all asynchronous device work.
    """

    def __init__(self, dataset: ImageDataset, *, sampler: EpochSampler, batch_size: int, drop_last: bool,
                 device: torch.device, crop_padding: int = 0, hflip: bool = False, resize: int | None = None,
                 randaugment: int | None = None, resized_crop: ResizedCrop | None = None):
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=0)
        self.resize, self.resized_crop = resize, resized_crop
        self.randaugment = None if randaugment is None else SeededRandAugment(randaugment)
        tensors = dataset.tensors()
        if tensors is None:
            raise ConfigError(f"data.resident: 'device' needs an in-memory dataset; {type(dataset).__name__} "
                              "reads files, use resident: dataloader")
        images, labels = tensors
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        groups = getattr(dataset, "groups", None)
        self.groups = None if groups is None else groups.to(self.device)
        self.crop_padding, self.hflip = int(crop_padding), bool(hflip)
        self.resident = True

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch's order and augmentation (call before iterating; mmengine calls the sampler's)."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        plan = self.sampler.plan()
        order, dy, dx, flip = (t.to(self.device) for t in plan)
        augment = self.crop_padding > 0 or self.hflip
        s, e, positions = self.sampler.seed, self.sampler.epoch, plan[0].tolist()
        # seeds from the CPU copy of the order: no device-to-host copy
        if self.randaugment is not None:
            seeds = [randaugment_seed(s, e, i) for i in positions]
        if self.resized_crop is not None:
            boxes = [crop_seed(s, e, i) for i in positions]
        bs = self.batch_size
        for b in range(len(self)):
            sl = slice(b * bs, (b + 1) * bs)
            idx = order[sl]
            images = self.images[idx]
            if self.resized_crop is not None:
                images = self.resized_crop.batch(images, boxes[sl])
            if augment:
                images = crop_flip(images, dy[sl], dx[sl], flip[sl], self.crop_padding)
            if self.randaugment is not None:
                images = self.randaugment.batch(images, seeds[sl])
            # resize after the crop, as a transform pipeline would: the crop works on the stored size
            images = resize_images(images, self.resize)
            batch = {"inputs": images, "labels": self.labels[idx]}
            if self.groups is not None:
                batch["groups"] = self.groups[idx]
            yield batch


def _resident_fits(dataset: ImageDataset, device: torch.device) -> bool:
    tensors = dataset.tensors()
    if tensors is None:
        return False
    if device.type != "cuda":
        return True  # host memory already holds the split; "resident" just skips workers and copies
    total = torch.cuda.get_device_properties(device).total_memory
    return tensors[0].numel() * tensors[0].element_size() <= RESIDENT_MEMORY_SHARE * total


def build_loader(dataset: ImageDataset, *, train: bool, batch_size: int, device: torch.device | str = "cpu",
                 resident: str = "auto", num_workers: int = 0, crop_padding: int = 0, hflip: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool | None = None, resize: int | None = None,
                 randaugment: int | None = None, resized_crop: ResizedCrop | None = None) -> DataLoader:
    """Build the loader for one split (interface A).

    Args:
        dataset: any :class:`ImageDataset`.
        train: shuffle and augment (crop/flip) when true; fixed order and no augmentation otherwise.
        batch_size: samples per batch on this rank.
        device: the training device (the resident path puts the data there).
        resident: ``"device"``, ``"dataloader"`` or ``"auto"`` (resident when the dataset is in memory and
            takes at most a quarter of the accelerator's memory).
        num_workers: worker processes of the DataLoader path (ignored by the resident path).
        crop_padding: random crop with this zero padding (train only; 0 disables).
        hflip: random horizontal flip (train only).
        seed: with the epoch, fixes the order and augmentation.
        rank: this process's rank; world_size: number of processes (sharding like DistributedSampler).
        drop_last: drop the last incomplete batch; defaults to ``train``.
        resize: resize every image (train and val, after crop/flip) bilinearly to ``resize``×``resize``
            (:func:`resize_images`), batched on the device for the resident path; ``None`` keeps the stored size.
        randaugment: RandAugment magnitude (train only; 2 operations, torchvision's op list, 0..30), applied
            per image after the crop/flip and before the resize, seeded by ``(seed, epoch, index)``; on the
            resident path image by image on the device. ``None`` disables it.
        resized_crop: RandomResizedCrop (train only) in place of the padded crop, from the uncropped image,
            seeded by ``(seed, epoch, index)``, before the flip; on the resident path image by image on the device.
    """
    if resident not in RESIDENT_MODES:
        raise ConfigError(f"data.resident: expected one of {list(RESIDENT_MODES)}, got {resident!r}")
    if batch_size < 1:
        raise ConfigError(f"data.batch_size: expected a positive int, got {batch_size}")
    if crop_padding < 0 or num_workers < 0:
        raise ConfigError("data: crop_padding and num_workers must be >= 0")
    if resize is not None and int(resize) < 1:
        raise ConfigError(f"data.resize: expected null or a positive int, got {resize}")
    resize = None if resize is None else int(resize)
    device = torch.device(device)
    drop_last = train if drop_last is None else bool(drop_last)
    if not train:
        crop_padding, hflip, randaugment, resized_crop = 0, False, None, None
    if resized_crop is not None:
        resized_crop.check_padding(crop_padding)
    if randaugment is not None and not 0 <= int(randaugment) <= 30:
        raise ConfigError(f"data.randaugment: expected null or a magnitude in 0..30, got {randaugment}")
    sampler = EpochSampler(len(dataset), shuffle=train, crop_padding=crop_padding, hflip=hflip, seed=seed,
                           rank=rank, world_size=world_size, drop_last=drop_last)
    if drop_last and len(sampler) < batch_size:  # every batch would be dropped: an epoch of no images
        raise ConfigError(f"data.batch_size={batch_size}: larger than this split ({len(sampler)} images per "
                          f"process), so no full batch is left; expected ≤ {len(sampler)}")
    if getattr(dataset, "groups", None) is not None and resident == "dataloader":
        raise ConfigError("data.resident: a dataset with groups (worst-group metrics) needs the device-resident "
                          "loader; use resident: auto or device")
    if resident == "device" or (resident == "auto" and _resident_fits(dataset, device)):
        return ResidentLoader(dataset, sampler=sampler, batch_size=batch_size, drop_last=drop_last,
                              device=device, crop_padding=crop_padding, hflip=hflip, resize=resize,
                              randaugment=randaugment, resized_crop=resized_crop)
    return EpochDataLoader(dataset, sampler=sampler, batch_size=batch_size, drop_last=drop_last,
                           num_workers=num_workers, pin_memory=device.type == "cuda",
                           crop_padding=crop_padding, hflip=hflip, resize=resize, randaugment=randaugment,
                           resized_crop=resized_crop)
