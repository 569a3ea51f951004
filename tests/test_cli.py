"""The command line: verbs, `mixbench list`, one-line errors with exit status 2 and no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from _spine import ROOT, env, run_cli

from mixbench.cli import main as cli_main
from mixbench.errors import ConfigError
from mixbench.registry import REGISTRIES


def test_list_all_registries(capsys: pytest.CaptureFixture) -> None:
    assert cli_main.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRIES:
        assert out.count(f"\n{name} (") + out.startswith(f"{name} (") == 1
    assert "cutmix" in out and "soft_ce" in out and "digits_cnn" in out and "classifier" in out


def test_list_one_registry_with_summaries(capsys: pytest.CaptureFixture) -> None:
    assert cli_main.main(["list", "mixups"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mixups (")
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    assert {"none", "mixup", "cutmix"} <= set(rows)
    assert all(len(r.split(None, 1)) == 2 for r in rows.values())  # every entry has a summary


def test_unknown_registry_and_verb_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert cli_main.main(["list", "mixupz"]) == 2
    assert "did you mean 'mixups'" in capsys.readouterr().err
    assert cli_main.main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err


def test_cfg_prints_resolved_config_and_run_dir(capsys: pytest.CaptureFixture) -> None:
    assert cli_main.main(["train", "configs/digits/cutmix.yaml", "seed=3", "--cfg"]) == 0
    out = capsys.readouterr().out
    assert "type: cutmix" in out and "# run dir: work_dirs/digits/" in out and out.rstrip().endswith("-s3")


@pytest.mark.parametrize("args,needle", [
    (["schedule.epochs=abc"], "schedule.epochs"),
    (["mixup=cutmx"], "cutmix"),
    (["data.root=/does/not/exist"], "/does/not/exist"),
    (["configs/nope.yaml"], "nope.yaml"),
    (["mixup=cutmix", "mixup.partner=sideways"], "mixup.partner"),  # a value the policy itself rejects
])
def test_bad_input_exits_2_with_one_line(args: list[str], needle: str) -> None:
    proc = run_cli([*args, "--cfg"], ROOT)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_console_command_dispatches() -> None:
    proc = subprocess.run([sys.executable, "-m", "mixbench.cli.main", "--help"], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "train" in proc.stdout and "list" in proc.stdout


@pytest.mark.parametrize("content", [b"garbage\n", b""])
def test_unreadable_checkpoint_is_one_line(tmp_path, content: bytes) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    from mixbench.cli.test import load_weights

    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_weights(torch.nn.Linear(2, 2), str(bad))


def test_checkpoint_without_state_dict_is_one_line(tmp_path) -> None:
    bad = tmp_path / "list.pth"
    torch.save([1, 2, 3], bad)
    from mixbench.cli.test import load_weights

    with pytest.raises(ConfigError, match="holds no state dict"):
        load_weights(torch.nn.Linear(2, 2), str(bad))
