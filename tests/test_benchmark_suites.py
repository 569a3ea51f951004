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


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """Validated config of a suite entry, composed once per (config, overrides other than the epochs).

    Entries that differ only in schedule.epochs share one composition (Hydra composes in ~0.2 s); the epochs
    value itself is checked on the first composition. Both tests below read the same cache.
    """
    root = tmp_path_factory.mktemp("suites")
    cache: dict[tuple, dict] = {}

    def get(suite, run) -> dict:
        overrides = [*suite.overrides, *run.overrides, f"seed={run.seeds[0]}", f"work_dir={root}"]
        rest, epochs = _split_epochs(overrides)
        key = (run.config, tuple(rest))
        if key not in cache:
            raw, source = compose(str(ROOT / run.config), overrides)
            if raw["data"].get("root") is not None:
                raw["data"]["root"] = str(root)  # datasets are not needed to check a config
            cache[key] = validate(raw, source)
            if epochs:
                assert cache[key]["schedule"]["epochs"] == int(epochs[-1][len(EPOCHS):])
        assert all(int(o[len(EPOCHS):]) >= 1 for o in epochs), (suite.name, run.label)
        return cache[key]

    return get


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_suite_entries_compose(path, validated, monkeypatch):
    monkeypatch.chdir(ROOT)  # suite entries name configs relative to the repository root
    suite = load_suite(path)
    assert suite.runs and len({r.label for r in suite.runs}) == len(suite.runs)
    for run in suite.runs:
        cfg = validated(suite, run)
        assert cfg["mixup"]["type"] == run.label.split()[0], (path.name, run.label)


def _generator():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import openmixup_suites as gen
    finally:
        sys.path.pop(0)
    return gen


def test_openmixup_suites_match_their_tables():
    """The suite files are what benchmarks/openmixup_suites.py writes from its tables (one source of numbers)."""
    gen = _generator()
    texts = {**{n: gen.suite_text for n in gen.SUITES}, **{n: gen.vit_suite_text for n in gen.VIT_SUITES},
             gen.IMAGENET_SUITE: gen.imagenet_suite_text}
    for name, text in texts.items():
        path = ROOT / "benchmarks" / f"{name}.yaml"
        assert path.read_text() == text(name), f"{path.name}: rerun python benchmarks/openmixup_suites.py"
        refs = [r.reference for r in load_suite(path).runs if r.reference is not None]
        assert refs and all(50.0 < r < 100.0 for r in refs)


def _alphas(mix: dict) -> float | tuple | None:
    """The alpha(s) a composed mixup block trains with: one, or (mixup, cutmix) of a two-policy recipe."""
    if mix["type"] == "switch":
        return tuple(float(p["alpha"]) for p in mix["policies"])
    if mix["type"] == "transmix":
        return float(mix["mixup_alpha"]), float(mix["alpha"])
    return float(mix["alpha"]) if "alpha" in mix else None


@pytest.mark.parametrize("name", ["openmixup_cifar100_deit_s", "openmixup_cifar100_swin_t",
                                  "openmixup_cifar100_convnext_t"])
def test_openmixup_vit_suites_follow_the_table(name, validated, monkeypatch):
    """Each ViT-table cell is one entry: its reference, epochs and the table's alpha in the composed config."""
    monkeypatch.chdir(ROOT)
    gen = _generator()
    suite = load_suite(ROOT / "benchmarks" / f"{name}.yaml")
    assert suite.definition == "best"
    runs = {r.label: r for r in suite.runs}
    _, _, table, _, _ = gen.VIT_SUITES[name]
    assert len(runs) == len(table) * len(gen.VIT_EPOCHS)
    for method, alpha, refs in table:
        policy = gen.POLICY[method][0]
        for epochs, ref in zip(gen.VIT_EPOCHS, refs):
            run = runs[f"{policy} {epochs}ep"]
            assert run.reference == ref and f"schedule.epochs={epochs}" in run.overrides, (name, run.label)
            got = _alphas(validated(suite, run)["mixup"])
            if policy in gen.NO_ALPHA:
                continue  # no alpha in mixbench (none; SmoothMix: the mask sets the weights)
            want = tuple(map(float, alpha)) if isinstance(alpha, tuple) else float(alpha)
            assert got == want, (name, run.label, got, want)


def test_openmixup_imagenet_suite_follows_the_table(validated, monkeypatch):
    """Each R-50 cell is one entry: its reference, epochs, the table's median window (5 / 10 epochs) and alpha."""
    monkeypatch.chdir(ROOT)
    gen = _generator()
    suite = load_suite(ROOT / "benchmarks" / "openmixup_imagenet_r50.yaml")
    runs = {r.label: r for r in suite.runs}
    assert len(runs) == len(gen.IMAGENET_R50) * 2
    assert {m: refs for m, _, refs in gen.IMAGENET_R50 if m in ("AutoMix", "SAMix*")} == \
        {"AutoMix": (77.91, 79.25), "SAMix*": (78.14, 79.39)}
    for method, alpha, refs in gen.IMAGENET_R50:
        policy = gen.POLICY[method][0]
        for epochs, ref, last_k in zip((100, 300), refs, (5, 10)):
            run = runs[f"{policy} {epochs}ep"]
            cfg = validated(suite, run)
            assert run.reference == ref and run.config.startswith("configs/imagenet/r50/"), run.label
            assert cfg["eval"]["median_last_k"] == last_k and cfg["data"]["type"] == "imagenet", run.label
            if alpha is not None:
                assert _alphas(cfg["mixup"]) == float(alpha), (run.label, cfg["mixup"])
