"""Property tests of the model-free mixup policies: exact formula with injected λ / partner, targets, label
weights, masks, determinism, dtypes and batch sizes."""

from __future__ import annotations

import pytest
import torch

from mixbench.mixups import _ops
from mixbench.mixups.base import MixContext, one_hot
from mixbench.registry import MIXUPS, build

K = 6  # classes
H = W = 16

# Every model-free policy, with options that make it mix visibly on 16 px images.
STATIC = {
    "none": {},
    "mixup": {"alpha": 1.0},
    "cutmix": {"alpha": 1.0},
    "timm_mix": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "elem"},
    "manifoldmix": {"alpha": 2.0, "layers": [0, 1, 2]},
    "fmix": {"alpha": 1.0},
    "gridmix": {"alpha": 1.0},
    "smoothmix": {},
    "resizemix": {},
    "saliencymix": {"alpha": 1.0},
    "maskmix": {"mask_patch_size": 4},
    "switch": {"policies": [{"type": "mixup", "alpha": 0.8}, {"type": "cutmix", "alpha": 1.0}], "probs": [0.5, 0.5]},
}
BINARY_MASK = {"cutmix", "gridmix", "saliencymix", "maskmix"}


@pytest.fixture(params=["mask", "host"])
def path(request, monkeypatch):
    """Run a test on the vectorised mask path and on the CPU per-row host path (forced for 16 px rows)."""
    monkeypatch.setattr(_ops, "HOST_ROW_BYTES", 0 if request.param == "host" else 1 << 62)
    return request.param


def make(name: str, **over):
    return build(MIXUPS, {"type": name, **STATIC[name], **over}, "mixup")


def batch(n: int, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 3, H, W), generator=g).to(dtype)
    y = torch.randint(0, K, (n,), generator=g)
    return x, y


def ctx(seed: int = 0) -> MixContext:
    return MixContext(generator=torch.Generator().manual_seed(seed))


def test_every_static_policy_is_registered():
    names = set(MIXUPS.module_dict)
    assert set(STATIC) <= names


def check_batch(b, x, y, dtype):
    n = y.shape[0]
    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=1e-5, rtol=1e-5)
    assert b.inputs.shape == x.shape and b.inputs.dtype == dtype
    assert torch.equal(b.indices[0], torch.arange(n))
    total = sum(b.weights)
    torch.testing.assert_close(total, torch.ones(n), atol=1e-6, rtol=0)
    for w in b.weights:
        assert w.shape == (n,) and bool(((w >= 0) & (w <= 1)).all())
    expected = sum(w.view(n, 1) * one_hot(y[i], K) for i, w in zip(b.indices, b.weights))
    torch.testing.assert_close(b.targets, expected, atol=1e-6, rtol=0)
    if b.layer is not None:  # feature mixing: the inputs stay clean
        assert torch.equal(b.inputs, x)
        return
    xf, out, partner = x.float(), b.inputs.float(), x.float()[b.indices[1]] if b.num_sources > 1 else x.float()
    if b.mask is None:
        lam = b.weights[0].view(n, 1, 1, 1)
        torch.testing.assert_close(out, lam * xf + (1 - lam) * partner, **tol)
        return
    m = b.mask.float()
    assert m.shape == (n, 1, H, W) and bool(((m >= 0) & (m <= 1)).all())
    # the label weight of a mask policy is the realised anchor area
    torch.testing.assert_close(b.weights[0], m.mean(dim=(1, 2, 3)), atol=1e-6, rtol=0)
    anchor = (m == 1).expand_as(out)
    assert torch.equal(out[anchor], x[anchor].float()), "pixels of the anchor must be untouched"
    torch.testing.assert_close(out, m * xf + (1 - m) * partner, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("n", [1, 5, 8])
@pytest.mark.parametrize("name", sorted(STATIC))
def test_policy_properties(name, n, dtype, path):
    x, y = batch(n, dtype)
    x_before = x.clone()
    policy = make(name)
    for seed in range(3):
        b = policy(x, y, K, ctx(seed))
        if name == "resizemix":  # the partner is resized into the box: check the anchor part and weights only
            m = b.mask.float()
            torch.testing.assert_close(b.weights[0], m.mean(dim=(1, 2, 3)), atol=1e-6, rtol=0)
            anchor = (m == 1).expand_as(b.inputs)
            assert torch.equal(b.inputs[anchor], x[anchor])
            continue
        check_batch(b, x, y, dtype)
    assert torch.equal(x, x_before), "a policy must not modify its input"


@pytest.mark.parametrize("name", sorted(STATIC))
def test_deterministic_under_seeded_generator(name):
    x, y = batch(8)
    a = make(name)(x, y, K, ctx(3))
    b = make(name)(x, y, K, ctx(3))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets) and a.layer == b.layer
    if name != "none":
        outs = [make(name)(x, y, K, ctx(s)) for s in range(6)]
        assert any(not torch.equal(o.targets, outs[0].targets) or not torch.equal(o.inputs, outs[0].inputs)
                   for o in outs[1:])


@pytest.mark.parametrize("name", sorted(set(STATIC) - {"none", "switch"}))
def test_prob_zero_is_identity(name):
    x, y = batch(6)
    b = make(name, prob=0.0)(x, y, K, ctx(1))
    assert torch.equal(b.inputs, x)
    torch.testing.assert_close(b.targets, one_hot(y, K))


def test_mixup_injected_exact(path):
    x, y = batch(7)
    lam, index = torch.tensor([0.3]), torch.tensor([3, 0, 6, 1, 2, 5, 4])
    b = make("mixup").mix_with(x, y, K, lam=lam, index=index)
    torch.testing.assert_close(b.inputs, 0.3 * x + 0.7 * x[index], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(b.targets, 0.3 * one_hot(y, K) + 0.7 * one_hot(y[index], K))
    assert torch.equal(make("mixup").mix_with(x, y, K, lam=torch.ones(1), index=index).inputs, x)


def test_cutmix_injected_box(path):
    x, y = batch(4)
    index = torch.tensor([2, 3, 0, 1])
    box = tuple(torch.tensor([v]) for v in (2, 9, 5, 16))  # y1, y2, x1, x2
    b = make("cutmix").mix_with(x, y, K, lam=torch.tensor([0.5]), index=index, box=box)
    ref = x.clone()
    ref[:, :, 2:9, 5:16] = x[index][:, :, 2:9, 5:16]
    assert torch.equal(b.inputs, ref)
    torch.testing.assert_close(b.weights[0], torch.full((4,), 1 - 7 * 11 / 256))


def test_cutmix_box_is_a_single_rectangle():
    x, y = batch(4)
    b = make("cutmix")(x, y, K, ctx(5))
    inside = b.mask[0, 0] == 0
    rows, cols = inside.any(1).nonzero().flatten(), inside.any(0).nonzero().flatten()
    if rows.numel():
        assert inside[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        assert int(inside.sum()) == rows.numel() * cols.numel()


@pytest.mark.parametrize("name", ["mixup", "cutmix", "fmix"])
def test_flip_with_odd_batch_leaves_middle_unmixed(name):
    """With partner ``flip`` and odd N the middle sample is its own partner: its image and one-hot target stay."""
    x, y = batch(5)
    b = make(name, partner="flip")(x, y, K, ctx(2))
    assert torch.equal(b.inputs[2], x[2])
    torch.testing.assert_close(b.targets[2], one_hot(y[2:3], K)[0])


def test_timm_pair_mode_is_symmetric(path):
    x, y = batch(8)
    b = make("timm_mix", mode="pair")(x, y, K, ctx(4))
    torch.testing.assert_close(b.weights[0], b.weights[0].flip(0))
    torch.testing.assert_close(b.mask, b.mask.flip(0))


def test_manifoldmix_layers_and_features():
    x, y = batch(6)
    policy = make("manifoldmix", layers=[1, 2])
    layers = {policy(x, y, K, ctx(s)).layer for s in range(20)}
    assert layers == {1, 2}
    b = policy.mix_with(x, y, K, lam=torch.tensor([0.25]), index=torch.tensor([1, 0, 3, 2, 5, 4]), layer=2)
    h = torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(b.mix_features(h), 0.25 * h + 0.75 * h[[1, 0, 3, 2, 5, 4]])


def test_switch_uses_each_policy_with_its_probability():
    x, y = batch(4)
    policy = make("switch", probs=[0.8, 0.2])
    names = [policy(x, y, K, MixContext(generator=torch.Generator().manual_seed(0), iter=i)).extras["policy"]
             for i in range(200)]
    assert 0.7 < names.count("mixup") / 200 < 0.9 and "cutmix" in names


def test_fmix_mask_area_matches_lambda():
    x, y = batch(4, seed=1)
    policy = make("fmix")
    s = policy.sample(x, y, ctx(7))
    b = policy.mix_with(x, y, K, **s)
    assert abs(float(b.weights[0][0]) - float(s["lam"][0])) <= 1.0 / (H * W) + 1e-6
    assert set(b.mask.unique().tolist()) <= {0.0, 1.0}


def test_smoothmix_label_weights_not_inverted():
    """Regression: OpenMixup gives mean(G) to the anchor although G is the partner's share of the pixels."""
    x = torch.zeros(2, 3, H, W)
    x[1] = 1.0  # anchor 0 is black, its partner (sample 1) is white
    y = torch.tensor([0, 1])
    policy = make("smoothmix")
    s = policy.sample(x, y, ctx(0))
    b = policy.mix_with(x, y, K, **{**s, "index": torch.tensor([1, 0])})
    partner_share = b.inputs[0].mean()  # fraction of sample 0's pixels that come from sample 1
    torch.testing.assert_close(b.weights[1][0], partner_share, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.weights[0][0], 1 - partner_share, atol=1e-5, rtol=0)
    assert abs(float(partner_share) - 0.5) > 0.01  # the two conventions differ on this draw
    openmixup_anchor_weight = partner_share  # mean(G), what OpenMixup assigns to y_a
    assert not torch.allclose(b.weights[0][0], openmixup_anchor_weight)


def test_resizemix_patch_is_resized_partner(path):
    import torch.nn.functional as F
    x, y = batch(3)
    index = torch.tensor([2, 0, 1])
    box = tuple(torch.tensor([v]) for v in (3, 11, 2, 14))
    for mode in ("nearest", "bilinear"):
        b = make("resizemix", interpolation=mode).mix_with(x, y, K, box=box, index=index)
        ref = x.clone()
        opts = {} if mode == "nearest" else {"align_corners": False}
        ref[:, :, 3:11, 2:14] = F.interpolate(x[index], size=(8, 12), mode=mode, **opts)
        torch.testing.assert_close(b.inputs, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.weights[0], torch.full((3,), 1 - 96 / 256))


def test_official_resizemix_patch_never_clipped():
    x, y = batch(8)
    policy = make("resizemix", placement="inside", per_sample=True, use_alpha=False)
    for seed in range(5):
        s = policy.sample(x, y, ctx(seed))
        y1, y2, x1, x2 = s["box"]
        assert bool((y1 >= 0).all() and (y2 <= H).all() and (x1 >= 0).all() and (x2 <= W).all())
        assert torch.equal(y2 - y1, x2 - x1)  # square patch: the side ratio is kept


def test_saliencymix_box_centred_on_peak():
    x = 0.3 * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x[1, :, 20:24, 6:10] += 3.0  # a bright blob in the partner
    y = torch.tensor([0, 1])
    policy = make("saliencymix", saliency="spectral_residual", window=True)
    b = policy.mix_with(x, y, K, lam=torch.tensor([0.9]), index=torch.tensor([1, 0]))
    inside = (b.mask[0, 0] == 0).nonzero().float().mean(0)
    assert abs(float(inside[0]) - 21.5) <= 2.5 and abs(float(inside[1]) - 7.5) <= 2.5


# Options that reach every branch of the host paths: per-sample boxes, timm modes, both resize modes, border
# cells of a grid that does not divide the image.
HOST_CASES = [
    ("mixup", {}), ("mixup", {"per_sample": True}), ("cutmix", {}), ("cutmix", {"per_sample": True}),
    ("cutmix", {"cutmix_minmax": [0.2, 0.8]}), ("timm_mix", {"mode": "batch"}), ("timm_mix", {"mode": "pair"}),
    ("timm_mix", {"mode": "elem"}), ("timm_mix", {"mode": "elem", "mixup_alpha": 0.0}),
    ("resizemix", {"interpolation": "nearest"}), ("resizemix", {"interpolation": "bilinear"}),
    ("resizemix", {"per_sample": True, "interpolation": "bilinear", "placement": "inside", "use_alpha": False}),
    ("fmix", {}), ("gridmix", {}), ("smoothmix", {}), ("saliencymix", {}), ("saliencymix", {"per_sample": True}),
    ("maskmix", {"mask_patch_size": 5}), ("manifoldmix", {"layers": [0]}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", range(len(HOST_CASES)))
def test_host_path_bit_identical_to_mask_path(case, dtype, monkeypatch):
    """The CPU per-row host paths and the vectorised (CUDA) mask path give the same bits."""
    name, over = HOST_CASES[case]
    x, y = batch(7, dtype)
    policy = make(name, **over)
    for seed in range(4):
        params = policy.sample(x, y, ctx(seed))
        out = {}
        for key, row_bytes in (("mask", 1 << 62), ("host", 0)):
            monkeypatch.setattr(_ops, "HOST_ROW_BYTES", row_bytes)
            out[key] = policy.mix_with(x, y, K, **params)
        a, b = out["mask"], out["host"]
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
        assert (a.mask is None and b.mask is None) or torch.equal(a.mask, b.mask)


# A Beta/Dirichlet concentration ≤ 0 is a config error at build time (it used to pass validation and fail with a
# ValueError traceback at the first training step). α ≤ 0 stays valid where it means "no mixing".
BAD_CONCENTRATION = [(name, {"alpha": 0.0}) for name in (
    "fmix", "gridmix", "saliencymix", "maskmix", "manifoldmix", "rankmixup", "transmix", "mixpro", "alignmix",
    "attentivemix", "snapmix", "puzzlemix", "comixup")] + [
    ("resizemix", {"alpha": -1.0}), ("tokenmix", {"alpha": 0.0, "lam": None}), ("transmix", {"mixup_alpha": 0.0}),
    ("tokenmix", {"mixup_alpha": 0.0}), ("mixpro", {"mixup_alpha": 0.0}), ("smmix", {"mixup_alpha": 0.0})]


@pytest.mark.parametrize("name,options", BAD_CONCENTRATION)
def test_non_positive_concentration_is_a_config_error(name, options):
    from mixbench.errors import ConfigError

    # the declared range (mixup.alpha=0.0: expected > 0) or, where α matters only in some modes, the policy's
    # own check of that mode (mixup.alpha: expected a value > 0, got 0.0)
    key = next(iter(options))
    with pytest.raises(ConfigError, match=rf"^mixup\.{key}(=-?[\d.]+)?: expected (a value )?[>≥] 0"):
        build(MIXUPS, {"type": name, **options}, "mixup")


@pytest.mark.parametrize("name,options", [("mixup", {"alpha": 0.0}), ("cutmix", {"alpha": 0.0}),
                                          ("timm_mix", {"mixup_alpha": 0.0, "cutmix_alpha": 1.0}),
                                          ("resizemix", {"alpha": 0.0, "use_alpha": False}),
                                          ("tokenmix", {"alpha": 0.0, "lam": 0.5})])
def test_zero_alpha_where_it_means_off_or_is_unused(name, options):
    build(MIXUPS, {"type": name, **options}, "mixup")
