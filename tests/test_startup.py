"""The start-up work mixbench skips (mixbench/engine/startup.py): each patch changes what is computed only
where nothing can use it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from mmengine.logging import MMLogger
from mmengine.visualization import Visualizer

from mixbench.engine import compat, startup

ROOT = Path(__file__).resolve().parents[1]


def test_logger_level_is_its_handlers_level(tmp_path: Path, capsys) -> None:
    compat.apply()
    quiet = MMLogger(name="startup-warning", log_level="WARNING", log_file=str(tmp_path / "w.log"))
    assert not quiet.isEnabledFor(logging.INFO) and quiet.isEnabledFor(logging.WARNING)
    quiet.info("not shown")
    quiet.warning("shown")
    loud = MMLogger(name="startup-info", log_level="INFO")
    assert loud.isEnabledFor(logging.INFO) and not loud.isEnabledFor(logging.DEBUG)
    loud.info("shown too")
    out = capsys.readouterr().out
    assert "not shown" not in out and "shown" in out and "shown too" in out
    assert "shown" in (tmp_path / "w.log").read_text() and "not shown" not in (tmp_path / "w.log").read_text()


def test_visualizer_draws_on_a_figure_built_on_first_use() -> None:
    compat.apply()
    image = np.zeros((6, 9, 3), np.uint8)
    image[:, :3] = 255
    lazy = Visualizer(name="startup-lazy")
    assert "_mixbench_figure" not in lazy.__dict__
    lazy.set_image(image)
    assert "_mixbench_figure" in lazy.__dict__ and lazy.dpi > 0
    np.testing.assert_array_equal(lazy.get_image(), image)
    given = Visualizer(name="startup-given", image=image)  # an image passed to the constructor is drawn too
    np.testing.assert_array_equal(given.get_image(), image)


def test_a_run_imports_neither_matplotlib_nor_torchvision_nor_mmcv(tmp_path: Path) -> None:
    """The Runner of a default training run (wandb off here) builds no figure, collects no environment report
    and does not probe mmcv: none of the three packages is imported."""
    code = ("import sys\nfrom mixbench.cli.main import main\n"
            f"rc = main(['train', {str(ROOT / 'configs/digits/mixup.yaml')!r}, 'schedule.epochs=1', "
            f"'runtime.wandb=off', 'runtime.progress=off', 'work_dir={tmp_path}'])\n"
            "print(sorted(m for m in ('matplotlib', 'torchvision', 'mmcv') if m in sys.modules), rc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip().splitlines()[-1] == "[] 0", done.stdout[-2000:] + done.stderr[-2000:]


def test_mmcv_is_probed_only_once_imported(monkeypatch) -> None:
    from mmengine.model import utils

    probed = []
    monkeypatch.setattr(utils, "mmcv_full_available", lambda: probed.append(1) or True)
    startup.patch_mmcv_probe()
    monkeypatch.delitem(sys.modules, "mmcv", raising=False)
    assert utils.mmcv_full_available() is False and probed == []
    monkeypatch.setitem(sys.modules, "mmcv", object())
    assert utils.mmcv_full_available() is True and probed == [1]


def test_wandb_launch_inputs_applied_only_when_the_launch_package_is_loaded(monkeypatch) -> None:
    from wandb.sdk.wandb_run import Run

    original = Run._detect_and_apply_job_inputs
    applied = []
    monkeypatch.setattr(Run, "_detect_and_apply_job_inputs", lambda self: applied.append(self))
    startup.patch_wandb_launch_inputs()
    patched = Run._detect_and_apply_job_inputs
    assert patched is not original
    monkeypatch.delitem(sys.modules, startup._LAUNCH_INPUTS, raising=False)
    patched("run")
    assert applied == []
    monkeypatch.setitem(sys.modules, startup._LAUNCH_INPUTS, object())
    patched("run")
    assert applied == ["run"]
