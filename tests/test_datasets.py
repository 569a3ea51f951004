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
    few = DATASETS.get("digits")("train", train_size=200)
    assert len(few) == 200 and torch.equal(few.images, train.images[:200]) and few.mean == train.mean
    assert torch.bincount(few.labels, minlength=10).min() >= 10  # the split is shuffled: all classes present
    assert len(DATASETS.get("digits")("val", train_size=200)) == 360
    with pytest.raises(ConfigError, match="train_size"):
        DATASETS.get("digits")("train", train_size=0)


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


# --- files on disk: tiny generated layouts -------------------------------------------------------------------


def write_image(path, value, size=(20, 14)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 7)).save(path)


def check_files(ds, n, num_classes, size):
    assert isinstance(ds, ImageDataset) and len(ds) == n and ds.num_classes == num_classes
    assert ds.tensors() is None
    for i in range(n):
        x, y = ds[i]
        assert x.dtype == torch.uint8 and x.shape == (3, size, size) and 0 <= y < num_classes
        # every generated image encodes its label in the red channel
        assert abs(int(x[0, size // 2, size // 2]) - (40 * y + 10)) <= 3  # JPEG is lossy


def test_imagefolder_and_imagenet_layout(tmp_path):
    for split, per_class in (("train", 2), ("val", 1)):
        for c, cls in enumerate(["cat", "dog", "eel"]):
            for k in range(per_class):
                write_image(tmp_path / split / cls / f"{k}.JPEG", 40 * c + 10)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    for name in ("imagefolder", "imagenet"):
        train = DATASETS.get(name)("train", root=str(tmp_path), image_size=8, resize=10)
        check_files(train, 6, 3, 8)
        assert train.classes == ["cat", "dog", "eel"]
        check_files(DATASETS.get(name)("val", root=str(tmp_path), image_size=8, resize=10), 3, 3, 8)
    cached = DATASETS.get("imagefolder")("val", root=str(tmp_path), image_size=8, in_memory=True)
    images, labels = cached.tensors()
    assert images.shape == (3, 3, 8, 8) and labels.tolist() == [0, 1, 2]


def test_tiny_imagenet_layout(tmp_path):
    wnids = ["n01", "n02"]
    (tmp_path / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for c, w in enumerate(wnids):
        for k in range(3):
            write_image(tmp_path / "train" / w / "images" / f"{w}_{k}.JPEG", 40 * c + 10, (64, 64))
    lines = []
    for k, c in enumerate([1, 0, 1]):
        write_image(tmp_path / "val" / "images" / f"val_{k}.JPEG", 40 * c + 10, (64, 64))
        lines.append(f"val_{k}.JPEG\t{wnids[c]}\t0\t0\t10\t10")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    check_files(DATASETS.get("tiny_imagenet")("train", root=str(tmp_path), image_size=16, resize=16), 6, 2, 16)
    val = DATASETS.get("tiny_imagenet")("val", root=str(tmp_path), image_size=16, resize=16)
    check_files(val, 3, 2, 16)
    assert [val[i][1] for i in range(3)] == [1, 0, 1]


def test_cub_layout(tmp_path):
    rows = [(1, "001.A/a1.jpg", 1, 1), (2, "001.A/a2.jpg", 1, 0), (3, "002.B/b1.jpg", 2, 1), (4, "002.B/b2.jpg", 2, 0),
            (5, "002.B/b3.jpg", 2, 1)]
    for _, rel, lab, _ in rows:
        write_image(tmp_path / "images" / rel, 40 * (lab - 1) + 10)
    (tmp_path / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel, _, _ in rows))
    (tmp_path / "image_class_labels.txt").write_text("".join(f"{i} {lab}\n" for i, _, lab, _ in rows))
    (tmp_path / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in rows))
    (tmp_path / "classes.txt").write_text("1 001.A\n2 002.B\n")
    train = DATASETS.get("cub")("train", root=str(tmp_path), image_size=8, resize=12)
    check_files(train, 3, 2, 8)
    assert train.classes == ["001.A", "002.B"]
    check_files(DATASETS.get("cub")("val", root=str(tmp_path), image_size=8, resize=12), 2, 2, 8)


def test_aircraft_layout(tmp_path):
    data = tmp_path / "data"
    variants = ["707-320", "A300B4"]
    (data / "images").mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    split_rows = {"trainval": [("0001", 0), ("0002", 1), ("0003", 1)], "test": [("0004", 0)]}
    for split, rows in split_rows.items():
        (data / f"images_variant_{split}.txt").write_text("".join(f"{i} {variants[c]}\n" for i, c in rows))
        for i, c in rows:
            write_image(data / "images" / f"{i}.jpg", 40 * c + 10)
    check_files(DATASETS.get("aircraft")("train", root=str(tmp_path), image_size=8, resize=10), 3, 2, 8)
    check_files(DATASETS.get("aircraft")("val", root=str(data), image_size=8, resize=10), 1, 2, 8)


def write_fake_cifar(root, name):
    import pickle

    import numpy as np

    folder, label_key, meta = {"cifar10": ("cifar-10-batches-py", "labels", ("batches.meta", "label_names")),
                               "cifar100": ("cifar-100-python", "fine_labels", ("meta", "fine_label_names"))}[name]
    files = ({"cifar10": [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
              "cifar100": ["train", "test"]})[name]
    (root / folder).mkdir(parents=True)
    for k, f in enumerate(files):
        data = np.full((2, 3072), k, dtype=np.uint8)
        data[1, :1024] = 200  # red plane of the second image
        with open(root / folder / f, "wb") as fh:
            pickle.dump({"data": data, label_key: [k % 3, 1]}, fh)
    with open(root / folder / meta[0], "wb") as fh:
        pickle.dump({meta[1]: [f"c{i}" for i in range(10 if name == "cifar10" else 100)]}, fh)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_local_files(tmp_path, name):
    write_fake_cifar(tmp_path, name)
    train = DATASETS.get(name)("train", root=str(tmp_path))
    val = DATASETS.get(name)("val", root=str(tmp_path))
    n_train = 10 if name == "cifar10" else 2
    assert (len(train), len(val)) == (n_train, 2)
    images, labels = train.tensors()
    assert images.shape == (n_train, 3, 32, 32) and images.dtype == torch.uint8
    assert int(images[1, 0, 5, 5]) == 200 and int(images[1, 1, 5, 5]) == 0
    assert train.num_classes == len(train.classes) and len(train.mean) == 3
    with pytest.raises(ConfigError, match="corrupted"):
        DATASETS.get(name)("train", root=str(tmp_path), verify=True)


@pytest.mark.parametrize("name,layout", [
    ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python/{train,test,meta}"),
    ("imagefolder", "{train,val}"), ("imagenet", "<wnid>"), ("tiny_imagenet", "val_annotations.txt"),
    ("cub", "train_test_split.txt"), ("aircraft", "images_variant_trainval.txt")])
def test_missing_root_is_one_line_config_error(tmp_path, name, layout):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as err:
        DATASETS.get(name)("train", root=str(missing))
    message = str(err.value)
    assert "\n" not in message and str(missing) in message and layout in message
    with pytest.raises(ConfigError, match="root"):
        DATASETS.get(name)("train", root=None)
