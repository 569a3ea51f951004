"""Learned mixers through the real run path: end-to-end digits runs (one metrics column per loss term), the
mixer's own optimiser group in a Runner, kill -9 and resume, 2-process DDP, ``mixbench test`` and
``visualize``, and the config errors."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _spine import ROOT, TINY, TRAIN, assert_sigkill_resume_bit_identical, env, run_cli

from mixbench.engine import compat
from mixbench.engine.report import read_metrics
from mixbench.results.record import read_record

pytestmark = pytest.mark.slow
TERMS = ("loss_mix_q", "loss_one_q", "loss_mix_k", "loss_mask")


def _run_dir(work_dir: Path) -> Path:
    (run_dir,) = [Path(p) for p in glob.glob(str(work_dir / "digits" / "*"))]
    return run_dir


@pytest.mark.parametrize("method", ["automix", "samix"])
def test_digits_run_logs_each_loss_term(method: str, tmp_path: Path) -> None:
    proc = run_cli([f"configs/digits/{method}.yaml", *TINY, "schedule.epochs=1", "runtime.log_interval=2",
                    "data.params.train_size=400", f"work_dir={tmp_path}"], ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = _run_dir(tmp_path)
    rec = read_record(run_dir / "record.json")
    assert rec["status"] == "finished" and rec["method"] == method and 0 <= rec["metrics"]["top1"]["final"] <= 1
    rows = [r for r in read_metrics(str(run_dir / "metrics.jsonl")) if r["kind"] == "train"]
    assert rows
    for row in rows:
        assert set(TERMS) <= set(row), row
        assert row["loss"] == pytest.approx(sum(row[t] for t in TERMS), rel=1e-5)
    # the checkpoint carries the mixer and the momentum encoder; `mixbench test` evaluates it
    ckpt = run_dir / "epoch_1.pth"
    state = compat.load_checkpoint(str(ckpt), map_location="cpu")["state_dict"]
    assert any(k.startswith("policy.mixblock.") for k in state) and any(k.startswith("policy.encoder_k.") for k in state)
    out = tmp_path / "test.json"
    tested = subprocess.run([sys.executable, "-m", "mixbench.cli.main", "test", str(run_dir / "config.yaml"),
                             "--checkpoint", str(ckpt), "--out", str(out)], cwd=ROOT, env=env(),
                            capture_output=True, text=True, timeout=900)
    assert tested.returncode == 0, tested.stderr[-2000:]
    assert json.loads(out.read_text())["metrics"]["top1"] == pytest.approx(rec["metrics"]["top1"]["final"])


def test_mixer_group_lr_follows_its_own_cosine_and_keeps_its_momentum(tmp_path: Path) -> None:
    from mmengine.hooks import Hook

    from mixbench.config import load_config
    from mixbench.engine.builder import build_runner
    from mixbench.engine.dist import DistInfo
    from mixbench.mixups.learned.base import cosine_anneal

    cfg, _ = load_config("configs/digits/automix.yaml", [*TINY, "schedule.epochs=1", "data.params.train_size=400",
                                                         "mixup.lr=0.2",
                                                         "mixup.min_lr=0.002", "mixup.weight_decay=0.0",
                                                         "mixup.group_momentum=0.0"])
    runner = build_runner(cfg, str(tmp_path), device=torch.device("cpu"), info=DistInfo())
    seen: list[tuple[int, list[float], list[float], float, list[float], float]] = []

    class Spy(Hook):
        priority = "LOW"  # after LearnedMixerHook

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            ids = {id(p) for p in runner.model.policy.group_parameters()}
            mine = [g for g in runner.optim_wrapper.param_groups if all(id(p) in ids for p in g["params"])]
            main = [g for g in runner.optim_wrapper.param_groups if all(g is not m for m in mine)]
            seen.append((runner.iter, [g["lr"] for g in mine], [g["weight_decay"] for g in mine], main[0]["lr"],
                         [g["momentum"] for g in mine], main[0]["momentum"]))

    runner.register_hook(Spy())
    runner.train()
    total = runner.max_iters
    assert len(seen) == total
    for it, lrs, decays, _, momenta, main_momentum in seen:
        assert lrs and all(lr == pytest.approx(cosine_anneal(0.2, 0.002, it / total)) for lr in lrs)
        assert all(d == 0.0 for d in decays)
        assert all(m == 0.0 for m in momenta) and main_momentum == 0.9  # OpenMixup's WRN MixBlock group
    assert seen[0][3] == pytest.approx(0.05 * 0.01)  # the main group still warms up from its own schedule


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    args = ["configs/digits/automix.yaml", *TINY, "schedule.epochs=3", "data.params.train_size=400",
            "runtime.deterministic=true",
            "runtime.checkpoint_interval=1", "runtime.max_keep_ckpts=5", "mixup.lr=0.05", "mixup.min_lr=0.001"]
    assert_sigkill_resume_bit_identical(args, tmp_path, state_prefix="policy.encoder_k.")


@pytest.mark.parametrize("method", ["automix", "samix"])
def test_two_process_ddp_matches_one_process(method: str, tmp_path: Path) -> None:
    out = tmp_path / "ddp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).with_name("_learned_ddp.py")), method, str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["ema_equal"] and result["online_equal"]
    assert result["ema_moved"] > 0 and result["max_diff"] < 1e-5, result


def test_torchrun_training_with_a_learned_mixer(tmp_path: Path) -> None:
    args = ["configs/digits/samix.yaml", *TINY, "schedule.epochs=1", f"work_dir={tmp_path}"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           TRAIN, *args], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = read_record(_run_dir(tmp_path) / "record.json")
    assert rec["status"] == "finished" and rec["env"]["world_size"] == 2


@pytest.mark.parametrize("override,needle", [
    ("mixup.mask_layer=3", "mixup.mask_layer: 3 is not a mix point of the backbone (it has 3"),
    ("mixup.lam_margin=0.7", "mixup.lam_margin=0.7: expected a value in [0, 0.5]"),
    ("mixup.momentum=1.5", "mixup.momentum=1.5: expected a value in [0, 1]"),
    ("mixup.min_lr=0.01", "mixup.min_lr: set lr too"),
    ("mixup.upsampling=area", "mixup.upsampling: expected one of nearest, bilinear, bicubic"),
    ("mixup.mask_loss_mode=L2", "mixup.mask_loss_mode: expected one of L1, L1+Variance"),
    ("task=regression loss=mse", "'automix' is a classification policy"),
    ("mixup.group_momentum=1.0", "mixup.group_momentum=1.0: expected a value in [0, 1)"),
    ("mixup.group_momentum=0 schedule.optimizer=adamw", "mixup.group_momentum: an SGD momentum, needs "
                                                         "schedule.optimizer=sgd (got adamw"),
])
def test_bad_options_are_one_line_config_errors(override: str, needle: str, tmp_path: Path) -> None:
    proc = run_cli(["configs/digits/automix.yaml", *override.split(), f"work_dir={tmp_path}"], ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "digits").exists()


def test_visualize_learned_masks_start_and_end(tmp_path: Path) -> None:
    from PIL import Image

    from mixbench.cli.visualize import main
    from mixbench.cli.visualize_learned import learned_picture

    pic = learned_picture("samix", {"type": "samix"}, experiment=None, steps=3, n=3, seed=0)
    assert torch.equal(pic.start.indices[1], pic.end.indices[1]) and torch.equal(pic.start.weights[0],
                                                                                  pic.end.weights[0])
    assert not torch.equal(pic.start.mask, pic.end.mask)  # three steps moved the MixBlock
    out = tmp_path / "automix.png"
    assert main(["--mixup", "automix", "--n", "3", "--learned-steps", "2", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.format == "PNG" and img.height > img.width  # six rows of three samples
