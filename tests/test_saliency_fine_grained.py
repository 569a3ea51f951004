"""The device fine-grained saliency against OpenCV's ``StaticSaliencyFineGrained``, and SaliencyMix's boxes.

``tests/data/saliency_fine_grained.npz`` holds OpenCV's maps (``(map * 255).astype("uint8")``, as the
references convert them) of 16 photos, 16 digits and 16 noise images at 32 px, and the SHA-256 and peak of
its maps of 2 digits and 4 pixel-replicated photos at 224 px, and of one 64-px image whose map wraps in
OpenCV's last 8-bit cast. It is written by
``python benchmarks/saliency_agreement.py --opencv-python PY --fixture tests/data/saliency_fine_grained.npz``
(CI has no OpenCV).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mixbench.datasets.base import channel_stats
from mixbench.errors import ConfigError
from mixbench.mixups._saliency import (
    _blur3,
    _grey,
    fine_grained_saliency,
    to_pixel_range,
)
from mixbench.mixups.base import MixContext
from mixbench.models.classifier import MixDataPreprocessor
from mixbench.registry import MIXUPS, build

FIXTURE = Path(__file__).parent / "data" / "saliency_fine_grained.npz"
SETS = ("photos", "digits", "noise")
LAMS = np.round(np.arange(0.05, 0.951, 0.05), 2)


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def nchw(imgs: np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(imgs)
    return t[:, None] if t.dim() == 3 else t.permute(0, 3, 1, 2)


def images224(ref: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name == "photos":  # stored as the 32-px photos, enlarged 7× by pixel replication
        return ref["photos32"][:4].repeat(7, axis=1).repeat(7, axis=2)
    return ref[f"{name}224"]


def normalised(imgs: torch.Tensor) -> tuple[torch.Tensor, MixDataPreprocessor]:
    """The batch a policy sees in training, and the preprocessor that made it."""
    pre = MixDataPreprocessor(*channel_stats(imgs))
    return (imgs.float() - pre.mean) / pre.std, pre


def official_anchor_weights(peaks: np.ndarray, size: int) -> np.ndarray:
    """The official ``saliency_bbox``: corners peak ± ⌊cut/2⌋ clipped to the image, cut = ⌊size·√(1−λ)⌋;
    anchor weight 1 − box area / image area. (N, len(LAMS))."""
    cut = (size * np.sqrt(1.0 - LAMS)).astype(np.int64)
    lo = np.clip(peaks[..., None] - cut // 2, 0, size)
    hi = np.clip(peaks[..., None] + cut // 2, 0, size)
    side = hi - lo  # (N, 2, len(LAMS))
    return 1.0 - side[:, 0] * side[:, 1] / size**2


def policy_boxes(x: torch.Tensor, **stats: torch.Tensor) -> np.ndarray:
    """Anchor weights of SaliencyMix's boxes with each image of ``x`` as the partner, for every λ in LAMS
    (N, len(LAMS)); ``stats``: the preprocessor's ``mean`` and ``std``, if known."""
    n = x.shape[0]
    y = torch.zeros(n, dtype=torch.int64)
    policy = build(MIXUPS, {"type": "saliencymix", "per_sample": True}, "mixup")
    index = torch.arange(n).roll(1)  # sample j pastes from image j − 1
    weights = []
    for lam in LAMS:
        b = policy.mix_with(x, y, 2, lam=torch.full((n,), float(lam)), index=index, **stats)
        weights.append(b.weights[0].double().roll(-1).numpy())  # back in the order of the partner images
    return np.stack(weights, 1)


def border_fraction(peaks: np.ndarray, size: int, frame: int = 2) -> float:
    edge = np.minimum(peaks.min(1), size - 1 - peaks.max(1))
    return float(np.mean(edge < frame))


def ref_peaks(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(len(maps), -1).argmax(1)  # NumPy's first maximum, as the references
    return np.stack([flat // maps.shape[-1], flat % maps.shape[-1]], 1)


@pytest.mark.parametrize("name", SETS)
def test_maps_equal_opencv_at_32px(ref, name):
    imgs = ref[f"{name}32"]
    ours = fine_grained_saliency(nchw(imgs)).numpy()
    assert ours.dtype == np.uint8 and ours.shape == imgs.shape[:3]
    np.testing.assert_array_equal(ours, ref[f"{name}32_map"])


@pytest.mark.parametrize("name", ("photos", "digits"))
def test_maps_equal_opencv_at_224px(ref, name):
    ours = fine_grained_saliency(nchw(images224(ref, name))).numpy()
    np.testing.assert_array_equal(ours.reshape(len(ours), -1).argmax(1), ref[f"{name}224_peak"])
    assert [hashlib.sha256(m.tobytes()).hexdigest() for m in ours] == list(ref[f"{name}224_sha256"])


def test_map_wraps_to_8_bits_like_opencv(ref):
    """At the corner pixel of this image 255·(on + off) / max is 264; OpenCV's 8-bit cast keeps the low
    byte, 8, amid neighbours of 169…188."""
    ours = fine_grained_saliency(nchw(ref["wrap64"])).numpy()
    np.testing.assert_array_equal(ours, ref["wrap64_map"])
    assert ours[0, 0, 0] == 264 - 256 and ours[0, :2, :2].ravel()[1:].min() > 150


@pytest.mark.parametrize("name", SETS)
def test_policy_boxes_in_training_equal_the_reference(ref, name):
    """With the preprocessor's statistics (training), every box and λ is the reference's."""
    imgs = nchw(ref[f"{name}32"])
    x, pre = normalised(imgs)
    weights = policy_boxes(x, mean=pre.mean, std=pre.std)
    expected = official_anchor_weights(ref_peaks(ref[f"{name}32_map"]), 32)
    np.testing.assert_allclose(weights, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", SETS)
def test_policy_without_statistics_matches_the_reference_distribution(ref, name):
    """An API caller's normalised tensor (no statistics: per-channel stretch). Stated bound: the fraction of
    peaks in the outer 2 px within 0.1 of the reference's, the mean anchor weight within 0.02, and the
    largest gap between the two CDFs of the per-(image, λ) anchor weights below 0.1 (measured at 32 px:
    photos 0.063 / 0.014 / 0.039, digits 0 / 0.003 / 0.016, noise 0 / 0.000 / 0.003)."""
    imgs = nchw(ref[f"{name}32"])
    x, _ = normalised(imgs)
    maps = fine_grained_saliency(to_pixel_range(x)).numpy()
    peaks, rpeaks = ref_peaks(maps), ref_peaks(ref[f"{name}32_map"])
    assert abs(border_fraction(peaks, 32) - border_fraction(rpeaks, 32)) <= 0.1
    weights = policy_boxes(x)
    np.testing.assert_allclose(weights, official_anchor_weights(peaks, 32), rtol=0, atol=1e-6)
    expected = official_anchor_weights(rpeaks, 32)
    assert abs(weights.mean() - expected.mean()) <= 0.02
    grid = np.union1d(weights, expected)
    cdf = lambda v: np.searchsorted(np.sort(v.ravel()), grid, side="right") / v.size  # noqa: E731
    assert np.abs(cdf(weights) - cdf(expected)).max() < 0.1


def test_grey_and_blur_follow_opencv_definitions():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 9, 7), generator=g)
    # COLOR_BGR2GRAY on 8 bits: round(0.114·c0 + 0.587·c1 + 0.299·c2) in 16-bit fixed point
    expected = (7470 * x[:, 0] + 38470 * x[:, 1] + 19596 * x[:, 2] + 32768) // 65536
    assert torch.equal(_grey(x.float()), expected.int())
    grey = expected.int()
    # 3×3 Gaussian (1 2 1)ᵀ(1 2 1)/16, border reflect-101 (NumPy's "reflect"), rounded half up
    p = np.pad(grey.numpy(), ((0, 0), (1, 1), (1, 1)), mode="reflect").astype(np.int64)
    k = np.array([1, 2, 1])
    s = sum(k[i] * k[j] * p[:, i:i + 9, j:j + 7] for i in range(3) for j in range(3))
    assert torch.equal(_blur3(grey), torch.as_tensor((s + 8) // 16).int())


def test_batch_independent_and_vectorised_equals_per_image(ref):
    imgs = nchw(ref["noise32"][:6])
    whole = fine_grained_saliency(imgs)
    single = torch.cat([fine_grained_saliency(imgs[i:i + 1]) for i in range(6)])
    assert torch.equal(whole, single)
    shuffled = fine_grained_saliency(imgs.flip(0))
    assert torch.equal(shuffled, whole.flip(0))


def test_no_global_rng_and_deterministic(ref):
    imgs = nchw(ref["photos32"][:4]).float()
    state = torch.random.get_rng_state()
    a, b = fine_grained_saliency(imgs), fine_grained_saliency(imgs)
    assert torch.equal(torch.random.get_rng_state(), state) and torch.equal(a, b)


def test_grey_channels_and_constant_image(ref):
    grey = nchw(ref["digits32"][:4])
    assert torch.equal(fine_grained_saliency(grey), fine_grained_saliency(grey.expand(-1, 3, -1, -1)))
    assert not fine_grained_saliency(torch.full((1, 3, 32, 32), 77.0)).any()


def test_stretch_does_not_depend_on_the_normalisation(ref):
    imgs = nchw(ref["photos32"][:4])
    x, pre = normalised(imgs)
    other = (imgs.float() - 3.0) / torch.tensor([10.0, 50.0, 2.0]).view(1, 3, 1, 1)
    assert torch.allclose(to_pixel_range(x), to_pixel_range(other), atol=1e-3)
    assert torch.allclose(to_pixel_range(x, pre.mean, pre.std), imgs.float(), atol=1e-3)


def test_sample_reads_the_preprocessor_statistics(ref):
    imgs = nchw(ref["photos32"][:8])
    x, pre = normalised(imgs)
    y = torch.arange(8)
    policy = build(MIXUPS, {"type": "saliencymix"}, "mixup")
    model = torch.nn.Module()
    model.data_preprocessor = pre
    c = MixContext(generator=torch.Generator().manual_seed(0), model=model)
    s = policy.sample(x, y, c)
    assert s["mean"] is pre.mean and s["std"] is pre.std
    batch = policy.mix(x, y, 8, MixContext(generator=torch.Generator().manual_seed(0), model=model))
    assert torch.equal(batch.inputs, policy.mix_with(x, y, 8, **s).inputs)
    assert "mean" not in policy.sample(x, y, MixContext(generator=torch.Generator().manual_seed(0)))


def test_box_centred_on_a_bright_blob():
    x = torch.full((2, 3, 32, 32), 0.1)
    x[1, :, 20:24, 6:10] = 1.0  # the partner's salient blob
    b = build(MIXUPS, {"type": "saliencymix"}, "mixup").mix_with(
        x, torch.tensor([0, 1]), 2, lam=torch.tensor([0.9]), index=torch.tensor([1, 0]))
    inside = (b.mask[0, 0] == 0).nonzero().float().mean(0)
    assert abs(float(inside[0]) - 21.5) <= 2.5 and abs(float(inside[1]) - 7.5) <= 2.5


@pytest.mark.parametrize("opts,key", [({"saliency": "itti"}, "mixup.saliency"), ({"window": True}, "mixup.window")])
def test_bad_options_rejected(opts, key):
    with pytest.raises(ConfigError, match=key):
        build(MIXUPS, {"type": "saliencymix", **opts}, "mixup")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu_without_host_sync(ref):
    imgs = torch.cat([nchw(ref["photos32"]), nchw(ref["noise32"])])
    cpu = fine_grained_saliency(imgs)
    cuda_imgs = imgs.cuda()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = fine_grained_saliency(cuda_imgs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(out.cpu(), cpu)
