"""Checkpoint trust and safety: a checkpoint never runs code, a foreign model is one line, and no kill, move or
truncated file costs a run its progress."""

from __future__ import annotations

import glob
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _spine import ROOT, TINY, env, run_cli
from mmengine.logging import HistoryBuffer

from mixbench.engine import compat
from mixbench.engine.run import checkpoint_problem, last_checkpoint
from mixbench.results.record import read_record

DIE_IN_SAVE = str(ROOT / "tests" / "_die_in_save.py")
CONFIG = "configs/digits/vanilla.yaml"


class _CreatesFile:
    """Unpickling this object opens (creates) ``path``: the payload of a malicious checkpoint."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "created_by_unpickling"
    path = tmp_path / "evil.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": {"w": torch.ones(1)}, "x": _CreatesFile(marker)}, path)
    return path, marker


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_the_payload_is_live(tmp_path: Path) -> None:
    """Full unpickling of the test file does create the file: the tests below would notice a full load."""
    path, marker = _malicious_checkpoint(tmp_path)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_malicious_checkpoint_is_refused_by_test(tmp_path: Path) -> None:
    path, marker = _malicious_checkpoint(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "test.py"), CONFIG, *TINY, "--checkpoint", str(path)],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    _one_line_error(proc, str(path), "refused", "open")
    assert not marker.exists()


def test_malicious_checkpoint_is_refused_by_visualize(tmp_path: Path) -> None:
    path, marker = _malicious_checkpoint(tmp_path)
    # puzzlemix reads the classifier's saliency, so its figure loads the checkpoint into a model
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "visualize.py"), "--mixup", "puzzlemix",
                           "--checkpoint", str(path), "--out", str(tmp_path / "fig.png")],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    _one_line_error(proc, str(path), "refused")
    assert not marker.exists() and not (tmp_path / "fig.png").exists()


def test_checkpoint_of_another_architecture_is_one_line(tmp_path: Path) -> None:
    from mixbench.config import load_config
    from mixbench.models.classifier import build_classifier

    cfg, _ = load_config(str(ROOT / CONFIG), ["model.backbone.width=32"])
    wide = build_classifier(cfg, num_classes=10, in_chans=1, mean=(0.5,), std=(0.5,))
    path = tmp_path / "wide.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": wide.state_dict()}, path)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "test.py"), CONFIG, *TINY, "--checkpoint", str(path)],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    line = _one_line_error(proc, str(path), "does not fit", "shape differs")
    key = next(k for k, v in wide.state_dict().items() if v.dim() == 4)  # the first conv: 32 vs 16 channels
    assert f"{key} {tuple(wide.state_dict()[key].shape)} instead of (16, " in line


# -- choosing the checkpoint to resume from ----------------------------------------------------------------------
def _save(path: Path, epoch: int) -> None:
    torch.save({"meta": {"epoch": epoch}, "state_dict": {"w": torch.full((64,), float(epoch))}}, path)


def test_truncated_checkpoint_is_never_chosen(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _save(tmp_path / "epoch_1.pth", 1)
    _save(tmp_path / "epoch_2.pth", 2)
    data = (tmp_path / "epoch_2.pth").read_bytes()
    (tmp_path / "epoch_2.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_2.pth"))
    assert checkpoint_problem(str(tmp_path / "epoch_2.pth")) is not None
    assert last_checkpoint(str(tmp_path)) == str(tmp_path / "epoch_1.pth")
    assert "not resuming from" in capsys.readouterr().err


def test_newest_complete_checkpoint_wins_over_the_marker(tmp_path: Path) -> None:
    """A kill after a save but before ``last_checkpoint`` was updated: the newer file is complete, take it."""
    for epoch in (1, 2, 10):
        _save(tmp_path / f"epoch_{epoch}.pth", epoch)
    (tmp_path / "last_checkpoint").write_text("/elsewhere/epoch_2.pth")
    (tmp_path / ".epoch_11.pth.part").write_bytes(b"partial")
    torch.save({"state_dict": {}}, tmp_path / "epoch_12.pth")  # no meta: not an mmengine checkpoint
    assert last_checkpoint(str(tmp_path)) == str(tmp_path / "epoch_10.pth")  # numeric order, not by name


def test_no_complete_checkpoint_means_none(tmp_path: Path) -> None:
    (tmp_path / "epoch_1.pth").write_bytes(b"")
    assert last_checkpoint(str(tmp_path)) is None
    assert last_checkpoint(str(tmp_path / "missing")) is None


# -- kills and moves, on real training runs ----------------------------------------------------------------------
def _killed_in_save(work_dir: Path, *extra: str) -> Path:
    """Train 2 epochs and die (SIGKILL) while writing epoch 2's checkpoint; the run dir."""
    proc = subprocess.run([sys.executable, DIE_IN_SAVE, CONFIG, *TINY, *extra, f"work_dir={work_dir}"], cwd=ROOT,
                          env=env(DIE_IN_SAVE_EPOCH="2"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    (run_dir,) = [Path(p) for p in glob.glob(str(work_dir / "digits" / "*"))]
    assert read_record(run_dir / "record.json")["status"] == "running"
    assert not (run_dir / "epoch_2.pth").exists()  # only the temporary file was being written
    return run_dir


def _resumed_and_finished(work_dir: Path, run_dir: Path, started: str, *extra: str) -> dict:
    again = run_cli([CONFIG, *TINY, *extra, f"work_dir={work_dir}"], ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    rec = read_record(run_dir / "record.json")
    assert rec["status"] == "finished"
    assert rec["started"] == started  # a resume keeps the start of the run; a fresh start would not
    assert not list(run_dir.glob(".*.part"))
    return rec


@pytest.mark.slow
def test_kill_during_save_with_max_keep_one_keeps_progress(tmp_path: Path) -> None:
    run_dir = _killed_in_save(tmp_path, "runtime.max_keep_ckpts=1")
    assert checkpoint_problem(str(run_dir / "epoch_1.pth")) is None  # not deleted before the new one was complete
    started = read_record(run_dir / "record.json")["started"]
    _resumed_and_finished(tmp_path, run_dir, started, "runtime.max_keep_ckpts=1")
    assert sorted(p.name for p in run_dir.glob("epoch_*.pth")) == ["epoch_2.pth"]  # the old one pruned after


@pytest.mark.slow
def test_moved_work_dir_resumes(tmp_path: Path) -> None:
    run_dir = _killed_in_save(tmp_path / "before")
    started = read_record(run_dir / "record.json")["started"]
    assert str(tmp_path / "before") in (run_dir / "last_checkpoint").read_text()  # mmengine's absolute path
    shutil.move(tmp_path / "before", tmp_path / "after")
    moved = tmp_path / "after" / run_dir.relative_to(tmp_path / "before")
    _resumed_and_finished(tmp_path / "after", moved, started)
    assert sorted(p.name for p in moved.glob("epoch_*.pth")) == ["epoch_1.pth", "epoch_2.pth"]
    assert (moved / "last_checkpoint").read_text() == str(moved / "epoch_2.pth")


# -- checkpoints of the run dir written before checkpoints were weights-only ---------------------------------------
def _legacy_state(self: HistoryBuffer) -> dict:
    """mmengine 0.10.7's own ``HistoryBuffer.__getstate__``: the state plus the statistics methods."""
    return {**self.__dict__, "statistics_methods": dict(HistoryBuffer._statistics_methods)}


def test_legacy_run_dir_checkpoint_is_rewritten_and_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    compat.apply()
    path = tmp_path / "epoch_1.pth"
    with monkeypatch.context() as m:
        m.setattr(HistoryBuffer, "__getstate__", _legacy_state)
        torch.save({"meta": {"epoch": 1}, "state_dict": {"w": torch.ones(3)},
                    "message_hub": {"log_scalars": {"train/loss": HistoryBuffer([2.0, 1.0], [1, 1])}}}, path)
    assert "builtins.getattr" in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    with pytest.raises(pickle.UnpicklingError):
        compat.load_checkpoint(str(path))
    assert last_checkpoint(str(tmp_path)) == str(path)
    assert "rewritten" in capsys.readouterr().err
    ckpt = compat.load_checkpoint(str(path))
    assert torch.equal(ckpt["state_dict"]["w"], torch.ones(3))
    assert ckpt["message_hub"]["log_scalars"]["train/loss"].mean() == 1.5
    assert not list(tmp_path.glob(".*.part"))


def test_malicious_file_in_a_run_dir_is_not_rewritten(tmp_path: Path) -> None:
    """Only files whose globals are the allow-list plus ``getattr`` are converted; this one names ``open``."""
    path, marker = _malicious_checkpoint(tmp_path)
    path.rename(tmp_path / "epoch_1.pth")
    assert not compat.rewrite_legacy_checkpoint(str(tmp_path / "epoch_1.pth"))
    assert last_checkpoint(str(tmp_path)) is None
    assert not marker.exists()
