"""AdaMixup against its definition: λ in the generated interval, hand-computed targets and discriminator loss,
gradient routing by autograd, and the training runs (end to end, kill -9 and resume, 2-process DDP)."""

from __future__ import annotations

import glob
import math
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _spine import ROOT, TINY, assert_sigkill_resume_bit_identical, run_cli

from mixbench.config import load_config
from mixbench.errors import ConfigError
from mixbench.mixups.base import MixContext
from mixbench.mixups.learned.adamixup import AdaMixup, classifier_batch, intrusion_loss, intrusion_targets, mixed_count
from mixbench.models.classifier import build_classifier
from mixbench.registry import MIXUPS, build
from mixbench.results.record import read_record

CONFIG = "configs/digits/adamixup.yaml"


def tiny_model(seed: int = 0):
    cfg, _ = load_config(str(ROOT / CONFIG), ["model.backbone.width=4"])
    torch.manual_seed(seed)
    return build_classifier(cfg, num_classes=10, in_chans=1, mean=(0.0,), std=(1.0,), input_shape=(1, 16, 16))


def batch_of(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def ctx_of(seed: int) -> MixContext:
    return MixContext(generator=torch.Generator().manual_seed(seed))


# -- the pieces, with injected values ------------------------------------------------------------------------------
def test_classifier_batch_hand_computed() -> None:
    x, y = batch_of(5)
    lam, index = torch.tensor([0.3, 0.9, 0.5]), torch.tensor([4, 0, 2])  # h = 3 mixed rows, 2 clean anchors
    b = classifier_batch(x, y, 10, lam, index)
    expected_x = [0.3 * x[0] + 0.7 * x[4], 0.9 * x[1] + 0.1 * x[0], 0.5 * x[2] + 0.5 * x[2], x[0], x[1]]
    torch.testing.assert_close(b.inputs, torch.stack(expected_x))
    eye = torch.eye(10)
    expected_t = [0.3 * eye[y[0]] + 0.7 * eye[y[4]], 0.9 * eye[y[1]] + 0.1 * eye[y[0]], eye[y[2]], eye[y[0]], eye[y[1]]]
    torch.testing.assert_close(b.targets, torch.stack(expected_t))


@pytest.mark.parametrize("n,h", [(2, 1), (7, 4), (64, 32), (100, 50)])
def test_half_the_batch_is_mixed(n: int, h: int) -> None:
    assert mixed_count(n) == h


def test_mixing_before_setup_says_so() -> None:
    x, y = batch_of(4)
    with pytest.raises(RuntimeError, match="no generator yet"):
        AdaMixup().mix(x, y, 10, ctx_of(0))


def test_a_batch_of_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        mixed_count(1)


def test_intrusion_loss_hand_computed_on_fixed_logits() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, -1.0], [-0.5, 0.5]])
    assert intrusion_targets(3, 2, torch.device("cpu")).tolist() == [1, 1, 1, 0, 0]  # real first: 1, mixed: 0

    def nll(row: list[float], k: int) -> float:
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))

    rows = logits.tolist()
    expected = (nll(rows[0], 1) + nll(rows[1], 1) + nll(rows[2], 1) + nll(rows[3], 0) + nll(rows[4], 0)) / 5
    assert float(intrusion_loss(logits, 3)) == pytest.approx(expected, rel=1e-6)


def test_gates_are_truncated_standard_normals() -> None:
    x, _ = batch_of(64)
    s = tiny_model().policy.sample(x, ctx_of(0))
    g = s["gates"]
    assert g.shape == (2, 32, 1, 16, 16) and float(g.abs().max()) <= 2.0
    # N(0, 1) truncated at ±2 has mean 0 and std √(1 − 4φ(2)/(Φ(2) − Φ(−2))) ≈ 0.8796
    assert abs(float(g.mean())) < 0.02 and float(g.std()) == pytest.approx(0.8796, abs=0.01)
    assert s["index"].shape == (32,) and int(s["index"].max()) < 64  # partners come from the whole batch
    assert float(s["u"].min()) >= 0.0 and float(s["u"].max()) < 1.0


# -- the policy on a model ---------------------------------------------------------------------------------------
def test_generated_lambda_lies_in_the_interval_and_targets_follow() -> None:
    model = tiny_model().train()
    policy: AdaMixup = model.policy
    with torch.no_grad():  # a generator far from its initial third-third-third split
        policy.generator.fc2.bias.copy_(torch.tensor([1.5, -0.5, 0.2]))
    x, y = batch_of(9)
    batch = policy.mix(x, y, 10, ctx_of(3)).bind(model.targets)
    s = policy.sample(x, ctx_of(3))  # the same draws
    a, b = policy.interval(x, s["index"], s["gates"])
    lam = batch.extras["lam"]
    torch.testing.assert_close(lam, (a + s["u"] * b).detach())
    assert bool(((a > 0) & (a + b < 1)).all()) and bool(((lam >= a) & (lam <= a + b)).all())
    torch.testing.assert_close(batch.extras["lam_low"], a.detach())
    h, idx, eye = 5, s["index"], torch.eye(10)
    mixed = lam.view(-1, 1, 1, 1) * x[:h] + (1 - lam.view(-1, 1, 1, 1)) * x[idx]
    torch.testing.assert_close(batch.inputs, torch.cat([mixed, x[:4]]))
    hand = [lam[i] * eye[y[i]] + (1 - lam[i]) * eye[y[idx[i]]] for i in range(h)] + [eye[y[j]] for j in range(4)]
    torch.testing.assert_close(batch.targets, torch.stack(hand))
    assert not batch.targets.requires_grad and batch.inputs.requires_grad


def test_generator_trunk_is_the_classifier_architecture_with_its_own_weights() -> None:
    model = tiny_model()
    trunk, backbone = model.policy.generator.trunk, model.backbone
    assert type(trunk) is type(backbone)
    theirs, mine = backbone.state_dict(), trunk.state_dict()
    assert theirs.keys() == mine.keys() and all(theirs[k].shape == mine[k].shape for k in theirs)
    convs = [k for k in theirs if k.endswith("weight") and theirs[k].dim() == 4]
    assert convs and not any(torch.equal(theirs[k], mine[k]) for k in convs)
    ids = {id(p) for p in backbone.parameters()}
    assert not ids & {id(p) for p in model.policy.parameters()}


def _grads(loss: torch.Tensor, modules: dict) -> dict[str, bool]:
    """For each named module: does any of its parameters get a non-zero gradient from ``loss``?"""
    names = list(modules)
    params = [list(modules[n].parameters()) for n in names]
    flat = [p for group in params for p in group]
    grads = torch.autograd.grad(loss, flat, retain_graph=True, allow_unused=True)
    out, i = {}, 0
    for name, group in zip(names, params):
        got = grads[i:i + len(group)]
        out[name] = any(g is not None and bool(g.abs().sum() > 0) for g in got)
        i += len(group)
    return out


def _losses(model, detach_mixed: bool = False) -> dict[str, torch.Tensor]:
    x, y = batch_of(8)
    batch = model.policy.mix(x, y, 10, ctx_of(1)).bind(model.targets)
    if detach_mixed:
        batch = replace(batch, inputs=batch.inputs.detach())
    return model.policy.losses(model, x, batch)


def test_gradient_routing() -> None:
    model = tiny_model().train()
    parts = {"generator": model.policy.generator, "discriminator": model.policy.discriminator,
             "trunk": model.backbone, "head": model.head}
    losses = _losses(model)
    # the classifier term reaches the shared trunk, the head and (through x̃) the generator, not the discriminator
    assert _grads(losses["loss_cls"], parts) == {"generator": True, "discriminator": False, "trunk": True,
                                                 "head": True}
    # the intrusion term reaches the shared trunk, its own heads and (through x̃) the generator, not the head
    assert _grads(losses["loss_intrusion"], parts) == {"generator": True, "discriminator": True, "trunk": True,
                                                       "head": False}
    # the generator is reached only through x̃: with the mixed images detached, nothing reaches it
    cut = _losses(model, detach_mixed=True)
    for key in ("loss_cls", "loss_intrusion"):
        assert _grads(cut[key], {"generator": model.policy.generator})["generator"] is False
    assert not losses["lam_low"].requires_grad and not losses["lam_high"].requires_grad


def test_step_returns_one_key_per_term() -> None:
    model = tiny_model().train()
    x, y = batch_of(8)
    out = model.loss(x, y)
    assert set(out) == {"loss_cls", "loss_intrusion", "lam_low", "lam_high"}
    assert 0 < float(out["lam_low"]) < float(out["lam_high"]) < 1


def test_own_group_is_the_policy_generator() -> None:
    from mixbench.engine.builder import optim_wrapper_cfg

    cfg, _ = load_config(str(ROOT / CONFIG), ["model.backbone.width=4", "mixup.lr=0.01", "mixup.min_lr=0.001"])
    torch.manual_seed(0)
    model = build_classifier(cfg, num_classes=10, in_chans=1, mean=(0.0,), std=(1.0,), input_shape=(1, 16, 16))
    assert optim_wrapper_cfg(cfg, model.policy)["paramwise_cfg"]["custom_keys"] == {
        "policy.generator": {"lr_mult": 1.0}}
    mine = {id(p) for p in model.policy.group_parameters()}
    assert mine == {id(p) for p in model.policy.generator.parameters()}
    assert not mine & {id(p) for p in model.policy.discriminator.parameters()}


def test_picture_of_the_generated_mixes() -> None:
    from mixbench.cli.visualize_model import reads_model, run_model_step

    assert reads_model(AdaMixup())
    step = run_model_step("adamixup", {"type": "adamixup"}, experiment=None, checkpoint=None, train_steps=1, n=6,
                          seed=0)
    lam = step.mixed.extras["lam"]
    assert lam.shape == (3,) and bool(((lam > 0) & (lam < 1)).all())
    torch.testing.assert_close(step.mixed.weights[0][:3], lam)


@pytest.mark.parametrize("option,value", [("hidden", 0), ("hidden", 2.5), ("init_std", 0.0), ("partner", "ring")])
def test_bad_options_name_the_key(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^mixup.{option}[:=]"):
        build(MIXUPS, {"type": "adamixup", option: value}, "mixup")


def test_bad_option_from_the_cli_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = run_cli([CONFIG, *TINY, "mixup.hidden=0", f"work_dir={tmp_path}"], ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "mixup.hidden=0: expected ≥ 1" in proc.stderr and not list(tmp_path.iterdir())


# -- 2-process DDP (gloo) against one process --------------------------------------------------------------------
def _rank_grads(model, shard: tuple[torch.Tensor, torch.Tensor], seed: int, net=None) -> None:
    model.reseed(seed, torch.device("cpu"))
    losses = (net or model)(*shard, mode="loss")
    sum(v for k, v in losses.items() if "loss" in k).backward()


def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    model = tiny_model().train()
    x, y = batch_of(16)
    net = torch.nn.parallel.DistributedDataParallel(model)
    _rank_grads(model, (x[rank * 8:(rank + 1) * 8], y[rank * 8:(rank + 1) * 8]), 100 + rank, net)
    torch.save({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, f"{out}/{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    g0, g1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
    model = tiny_model().train()
    x, y = batch_of(16)
    for rank in (0, 1):  # the same shards and generator seeds, one after the other, gradients accumulated
        _rank_grads(model, (x[rank * 8:(rank + 1) * 8], y[rank * 8:(rank + 1) * 8]), 100 + rank)
    single = {n: p.grad / 2 for n, p in model.named_parameters() if p.grad is not None}
    assert any(n.startswith("policy.generator.") for n in single)
    assert any(n.startswith("policy.discriminator.") for n in single)
    assert single.keys() == g0.keys() == g1.keys()
    for n in single:
        assert torch.equal(g0[n], g1[n]), n  # DDP averaged every gradient, the mixer's included
        torch.testing.assert_close(g0[n], single[n], rtol=1e-4, atol=1e-6, msg=n)


# -- training runs ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_digits_run_end_to_end(tmp_path: Path) -> None:
    import json

    proc = run_cli([CONFIG, *TINY, "schedule.epochs=1", "data.params.train_size=256", f"work_dir={tmp_path}"], ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = glob.glob(str(tmp_path / "digits" / "*"))
    rec = read_record(Path(run_dir) / "record.json")
    assert rec["status"] == "finished" and rec["method"] == "adamixup"
    rows = [json.loads(line) for line in open(Path(run_dir) / "metrics.jsonl")]
    train = [r for r in rows if r["kind"] == "train"]
    assert train
    for r in train:
        assert r["loss"] == pytest.approx(r["loss_cls"] + r["loss_intrusion"], rel=1e-5)
        assert 0 < r["lam_low"] < r["lam_high"] < 1


RESUME = [CONFIG, *TINY, "schedule.epochs=3", "data.params.train_size=512", "runtime.deterministic=true",
          "runtime.checkpoint_interval=1", "runtime.max_keep_ckpts=5"]


@pytest.mark.slow
def test_sigkill_then_rerun_is_bit_identical(tmp_path: Path) -> None:
    assert_sigkill_resume_bit_identical(RESUME, tmp_path, state_prefix="policy.generator.", timeout=600)