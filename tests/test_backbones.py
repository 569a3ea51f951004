"""Every registered backbone builds, forwards a tiny input, exposes mix points, and the linear head pools."""

import pytest
import torch
from torch import nn

from mixbench.registry import BACKBONES, HEADS, import_components

import_components()

# Small widths / inputs per backbone so the whole file stays fast on a 2-core CPU.
TINY = {
    "digits_cnn": (dict(in_chans=1, width=8), (2, 1, 16, 16)),
    "resnet18_cifar": (dict(width=8), (2, 3, 16, 16)),
    "resnet34_cifar": (dict(width=4), (2, 3, 16, 16)),
    "resnet50_cifar": (dict(width=4), (2, 3, 16, 16)),
    "resnext50_32x4d_cifar": (dict(width=16, groups=4, width_per_group=4), (2, 3, 16, 16)),
    "preact_resnet18": (dict(width=8), (2, 3, 16, 16)),
    "wrn28": (dict(widen_factor=1, dropout=0.1), (2, 3, 16, 16)),
    "timm": (dict(name="resnet10t", in_chans=2), (2, 2, 32, 32)),
    "torchvision": (dict(name="resnet18", in_chans=2), (2, 2, 32, 32)),
    "mlp": (dict(in_chans=10, hidden=16), (2, 10, 1, 1)),
}


def build(name):
    params, shape = TINY.get(name, ({}, (2, 3, 32, 32)))
    torch.manual_seed(0)
    return BACKBONES.get(name)(**params), torch.randn(shape)


def test_every_backbone_has_tiny_settings():
    assert set(BACKBONES.module_dict) <= set(TINY), "add tiny test settings for new backbones"


@pytest.mark.parametrize("name", sorted(BACKBONES.module_dict))
def test_backbone_forward_and_mix_points(name):
    model, x = build(name)
    model.eval()
    with torch.no_grad():
        feats = model(x)
    assert feats.shape[0] == x.shape[0] and feats.dim() in (2, 3, 4)
    channel_dim = 1 if feats.dim() == 4 else -1
    assert feats.shape[channel_dim] == model.num_features
    head = HEADS.get("linear")(model.num_features, 7)
    logits = head(feats, getattr(model, "num_prefix_tokens", 0))
    assert logits.shape == (x.shape[0], 7) and torch.isfinite(logits).all()

    points = model.mix_points()
    assert points and all(isinstance(p, nn.Module) for p in points)
    # Feature mixing hooks a mix point; replacing its output with a flipped batch must change the features.
    hook = points[len(points) // 2].register_forward_hook(lambda m, i, out: out.flip(0))
    try:
        with torch.no_grad():
            mixed = model(x)
    finally:
        hook.remove()
    assert not torch.allclose(mixed, feats)


def test_backbone_trains_one_step():
    model, x = build("resnet18_cifar")
    head = HEADS.get("linear")(model.num_features, 3)
    loss = head(model(x)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_linear_head_pooling():
    head = HEADS.get("linear")(4, 2)
    maps = torch.randn(3, 4, 5, 5)
    assert torch.allclose(head(maps), head.fc(maps.mean((2, 3))))
    tokens = torch.randn(3, 6, 4)
    assert torch.allclose(head(tokens, 1), head.fc(tokens[:, 0]))
    assert torch.allclose(head(tokens, 0), head.fc(tokens.mean(1)))
    assert torch.allclose(head(tokens[:, 0]), head.fc(tokens[:, 0]))
    assert isinstance(head.fc, nn.Linear)


def test_timm_loads_local_checkpoint_only(tmp_path):
    import timm

    source = timm.create_model("resnet10t", num_classes=5)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    model = BACKBONES.get("timm")(name="resnet10t", pretrained=True, checkpoint=str(path))
    assert torch.equal(model.model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert model.num_features == 512


@pytest.mark.parametrize("name,kwargs,match", [
    ("timm", dict(name="resnet10tt"), "resnet10t"),
    ("timm", dict(name="resnet10t", pretrained=True), "checkpoint"),
    ("timm", dict(name="resnet10t", pretrained=True, checkpoint="/nowhere.pth"), "/nowhere.pth"),
    ("torchvision", dict(name="resnet19"), "resnet18"),
    ("torchvision", dict(name="resnet18", weights="DEFAULT"), "never downloaded"),
    ("wrn28", dict(depth=27), "6n\\+4"),
])
def test_backbone_option_errors_are_config_errors(name, kwargs, match):
    from mixbench.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        BACKBONES.get(name)(**kwargs)


@pytest.mark.parametrize("name,kwargs,shape,prefix", [
    ("timm", dict(name="vit_tiny_patch16_224", img_size=32, depth=2), (2, 3, 32, 32), 1),
    ("torchvision", dict(name="vit_b_16", image_size=32), (2, 3, 32, 32), 1),
    ("torchvision", dict(name="mobilenet_v3_small"), (2, 3, 32, 32), 0),
])
def test_token_and_trunk_families(name, kwargs, shape, prefix):
    model = BACKBONES.get(name)(**kwargs).eval()
    with torch.no_grad():
        feats = model(torch.randn(shape))
    assert model.num_prefix_tokens == prefix and model.mix_points()
    assert feats.dim() == (3 if prefix else 4)
    assert feats.shape[-1 if prefix else 1] == model.num_features
