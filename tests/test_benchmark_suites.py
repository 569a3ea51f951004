"""Every suite under benchmarks/ parses, and every entry's config composes and validates with its overrides."""

import sys
from pathlib import Path

import pytest

from mixbench.config.compose import compose
from mixbench.config.validate import validate
from mixbench.results.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "benchmarks").glob("*.yaml"))
EPOCHS = "schedule.epochs="


def _split_epochs(overrides):
    epochs = [o for o in overrides if o.startswith(EPOCHS)]
    return [o for o in overrides if not o.startswith(EPOCHS)], epochs


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_suite_entries_compose(path, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # suite entries name configs relative to the repository root
    suite = load_suite(path)
    assert suite.runs and len({r.label for r in suite.runs}) == len(suite.runs)
    composed: dict[tuple, dict] = {}
    for run in suite.runs:
        overrides = [*suite.overrides, *run.overrides, f"seed={run.seeds[0]}", f"work_dir={tmp_path}"]
        rest, epochs = _split_epochs(overrides)
        # Entries that differ only in schedule.epochs share one composition (Hydra composes in ~0.2 s);
        # the epochs value itself is checked on the validated config below.
        key = (run.config, tuple(rest))
        if key not in composed:
            raw, source = compose(run.config, overrides)
            if raw["data"].get("root") is not None:
                raw["data"]["root"] = str(tmp_path)  # datasets are not needed to check a config
            composed[key] = validate(raw, source)
            if epochs:
                assert composed[key]["schedule"]["epochs"] == int(epochs[-1][len(EPOCHS):])
        cfg = composed[key]
        assert cfg["mixup"]["type"] == run.label.split()[0], (path.name, run.label)
        assert all(int(o[len(EPOCHS):]) >= 1 for o in epochs), (path.name, run.label)


def test_openmixup_suites_match_their_tables():
    """The suite files are what benchmarks/openmixup_suites.py writes from its tables (one source of numbers)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import openmixup_suites as gen
    finally:
        sys.path.pop(0)
    for name in gen.SUITES:
        path = ROOT / "benchmarks" / f"{name}.yaml"
        assert path.read_text() == gen.suite_text(name), f"{path.name}: rerun python benchmarks/openmixup_suites.py"
        refs = [r.reference for r in load_suite(path).runs if r.reference is not None]
        assert refs and all(50.0 < r < 100.0 for r in refs)
