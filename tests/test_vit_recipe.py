"""CIFAR-100 ViT recipe (OpenMixup): configs compose with the recipe's values, the backbones build with their
options, weight decay skips norm/bias/tokens/position embeddings, and ``data.resize`` keeps older hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from mixbench.config import load_config
from mixbench.config.validate import config_hash
from mixbench.engine.builder import optim_wrapper_cfg
from mixbench.registry import BACKBONES, build, import_components

import_components()
ROOT = Path(__file__).resolve().parents[1]
VIT_CONFIGS = sorted(str(p.relative_to(ROOT)) for b in ("deit_s", "swin_t", "convnext_t")
                     for p in (ROOT / "configs" / "cifar100" / b).glob("*.yaml"))


@pytest.mark.parametrize("path", VIT_CONFIGS)
def test_cifar100_vit_configs_follow_the_recipe(path, tmp_path):
    cfg, _ = load_config(path, [f"data.root={tmp_path}"])
    s, d = cfg["schedule"], cfg["data"]
    backbone = path.split("/")[2]
    assert (s["optimizer"], s["weight_decay"], s["clip_grad"], s["warmup_epochs"], s["min_lr"]) == \
        ("adamw", 0.05, 5.0, 20, 1e-6)
    assert s["no_decay_norm_bias"] and s["lr"] == (5e-4 if backbone == "swin_t" else 1e-3)
    assert d["batch_size"] == 100 and d["resize"] == (None if backbone == "convnext_t" else 224)
    assert cfg["loss"]["label_smoothing"] == 0.1
    assert cfg["model"]["backbone"]["drop_path_rate"] == {"deit_s": 0.1, "swin_t": 0.2, "convnext_t": 0.3}[backbone]


@pytest.mark.parametrize("name,size,shape", [("deit_s", 224, (1, 197, 384)), ("swin_t", 224, (1, 768, 7, 7)),
                                             ("convnext_t", 32, (1, 768, 4, 4))])
def test_vit_backbones_build_and_run(name, size, shape, tmp_path):
    cfg, _ = load_config(f"configs/cifar100/{name}/vanilla.yaml", [f"data.root={tmp_path}"])
    torch.manual_seed(0)
    backbone = build(BACKBONES, dict(cfg["model"]["backbone"], in_chans=3), "model.backbone")
    with torch.no_grad():
        out = backbone.eval()(torch.randn(1, 3, size, size))
    assert tuple(out.shape) == shape
    assert len(backbone.mix_points()) == (12 if name == "deit_s" else 4)  # blocks / stages


def test_no_weight_decay_on_norm_bias_tokens_and_position_embeddings():
    cfg, _ = load_config("configs/digits/vit/vanilla.yaml", ["schedule.weight_decay=0.05"])
    assert cfg["schedule"]["no_decay_norm_bias"]
    model = build(BACKBONES, dict(cfg["model"]["backbone"], in_chans=1), "model.backbone")
    wrapper = build_optim_wrapper(model, optim_wrapper_cfg(cfg))
    decay = {id(p): g["weight_decay"] for g in wrapper.optimizer.param_groups for p in g["params"]}
    by_name = {n: decay[id(p)] for n, p in model.named_parameters()}
    assert by_name["model.cls_token"] == 0.0 and by_name["model.pos_embed"] == 0.0
    assert by_name["model.blocks.0.norm1.weight"] == 0.0 and by_name["model.blocks.0.attn.qkv.bias"] == 0.0
    assert by_name["model.blocks.0.attn.qkv.weight"] == 0.05 and by_name["model.patch_embed.proj.weight"] == 0.05


def test_unset_resize_keeps_the_config_hash(tmp_path):
    cfg, _ = load_config("configs/digits/mixup.yaml", [])
    assert cfg["data"]["resize"] is None
    legacy = dict(cfg, data={k: v for k, v in cfg["data"].items() if k != "resize"})
    assert config_hash(cfg) == config_hash(legacy)
    resized, _ = load_config("configs/digits/mixup.yaml", ["data.resize=32"])
    assert config_hash(resized) != config_hash(cfg)
