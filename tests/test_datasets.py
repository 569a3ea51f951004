"""Datasets: shapes, dtypes, statistics and determinism of every in-memory dataset; one-line errors."""

import pytest
import torch

from mixbench.datasets import ImageDataset
from mixbench.errors import ConfigError
from mixbench.registry import DATASETS, import_components

import_components()

SMALL = {
    "digits": {},
    "synthetic": dict(num_classes=5, image_size=8, in_chans=3, train_size=50, val_size=20),
}


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("split", ["train", "val"])
def test_in_memory_dataset_contract(name, split):
    ds = DATASETS.get(name)(split, **SMALL[name])
    assert isinstance(ds, ImageDataset) and len(ds) > 0
    images, labels = ds.tensors()
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert images.shape == (len(ds), ds.in_chans, *ds.image_size)
    assert int(labels.min()) >= 0 and int(labels.max()) < ds.num_classes
    x, y = ds[0]
    assert x.dtype == torch.uint8 and x.shape == (ds.in_chans, *ds.image_size) and isinstance(y, int)
    assert len(ds.mean) == len(ds.std) == ds.in_chans and all(s > 0 for s in ds.std)
    again = DATASETS.get(name)(split, **SMALL[name])
    assert torch.equal(again.tensors()[0], images) and torch.equal(again.tensors()[1], labels)


def test_digits_split_sizes_and_options():
    train, val = DATASETS.get("digits")("train"), DATASETS.get("digits")("val")
    assert (len(train), len(val)) == (1437, 360)
    assert train.image_size == (16, 16) and train.in_chans == 1 and train.num_classes == 10
    assert train.mean == val.mean  # statistics always come from the training split
    assert torch.bincount(val.labels, minlength=10).min() >= 35  # stratified
    big = DATASETS.get("digits")("train", size=24, repeat=2)
    assert len(big) == 2 * 1437 and big.image_size == (24, 24)
    assert torch.equal(big.images[:1437], big.images[1437:])
    assert len(DATASETS.get("digits")("val", repeat=3)) == 360
    assert int(train.images.max()) == 255


def test_synthetic_splits_differ_and_seed_matters():
    kw = SMALL["synthetic"]
    train, val = DATASETS.get("synthetic")("train", **kw), DATASETS.get("synthetic")("val", **kw)
    assert (len(train), len(val)) == (50, 20)
    assert not torch.equal(train.images[:20], val.images)
    other = DATASETS.get("synthetic")("train", **(kw | {"seed": 1}))
    assert not torch.equal(other.images, train.images)
    assert torch.bincount(train.labels, minlength=5).tolist() == [10] * 5


def test_synthetic_is_learnable_by_nearest_class_mean():
    kw = dict(num_classes=10, image_size=16, in_chans=3, train_size=500, val_size=200)
    train, val = DATASETS.get("synthetic")("train", **kw), DATASETS.get("synthetic")("val", **kw)
    xt, xv = train.images.float().flatten(1), val.images.float().flatten(1)
    centroids = torch.stack([xt[train.labels == c].mean(0) for c in range(10)])
    acc = (torch.cdist(xv, centroids).argmin(1) == val.labels).float().mean()
    assert acc > 0.6  # chance is 0.1; a nearest-mean rule ignores the random shifts a CNN absorbs


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bad_split_is_config_error(name):
    with pytest.raises(ConfigError, match="split"):
        DATASETS.get(name)("test", **SMALL[name])
