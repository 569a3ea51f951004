"""The classifier's step: policies see normalised inputs, feature mixing at a layer, evaluation never mixes."""

from __future__ import annotations

import torch

from mixbench.config import load_config
from mixbench.mixups.base import MixBatch, MixPolicy
from mixbench.models.classifier import MixDataPreprocessor, build_classifier


def _model(*overrides: str):
    cfg, _ = load_config("configs/digits/mixup.yaml", ["model.backbone.width=8", *overrides])
    torch.manual_seed(0)
    return build_classifier(cfg, num_classes=10, in_chans=1, mean=(100.0,), std=(50.0,))


def _batch(n: int = 8):
    g = torch.Generator().manual_seed(0)
    return {"inputs": torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=g),
            "labels": torch.arange(n) % 10}


def test_preprocessor_normalises_and_channels_last() -> None:
    pre = MixDataPreprocessor((100.0, 50.0, 0.0), (50.0, 25.0, 1.0), channels_last=True)
    x = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
    out = pre({"inputs": x, "labels": torch.tensor([1, 2])})
    assert torch.allclose(out["inputs"][:, 0], torch.zeros(1)) and torch.allclose(out["inputs"][:, 1], torch.full((1,), 2.0))
    assert out["inputs"].is_contiguous(memory_format=torch.channels_last)


def test_loss_step_and_predict_never_mixes() -> None:
    model = _model()
    data = model.data_preprocessor(_batch(), True)
    model.train()
    losses = model(**data, mode="loss")
    assert losses["loss"].ndim == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    model.eval()
    with torch.no_grad():
        a = model(**data, mode="predict")[0]["logits"]
        model.policy = _Recorder(layer=None)
        b = model(**data, mode="predict")[0]["logits"]
    assert torch.equal(a, b) and model.policy.calls == 0


class _Recorder(MixPolicy):
    """Test policy: records calls; mixes features at ``layer`` with a fixed reversal and λ = 0.5."""

    def __init__(self, layer):
        super().__init__()
        self.layer, self.calls, self.seen = layer, 0, None

    def mix(self, inputs, labels, num_classes, ctx) -> MixBatch:
        self.calls += 1
        self.seen = inputs
        n = labels.shape[0]
        flip = torch.arange(n - 1, -1, -1)
        half = torch.full((n,), 0.5)
        return MixBatch(inputs=inputs, labels=labels, indices=[torch.arange(n), flip], weights=[half, half],
                        layer=self.layer)


def test_feature_mixing_at_a_layer_uses_a_forward_hook() -> None:
    model = _model()
    data = model.data_preprocessor(_batch(), True)
    model.eval()  # BN in eval mode so the hooked and manual forwards agree exactly
    model.policy = _Recorder(layer=2)
    assert abs(float(data["inputs"].mean())) < 5  # the policy sees normalised floats
    loss_mixed = model(**data, mode="loss")["loss"]
    bb = model.backbone
    with torch.no_grad():
        h = bb.stage2(bb.stage1(data["inputs"]))
        h = 0.5 * h + 0.5 * h.flip(0)
        logits = model.logits(bb.stage3(bb.drop(h)))
    targets = model.policy.seen is not None
    expected = -(torch.log_softmax(logits, -1) * _targets(data["labels"])).sum(-1).mean()
    assert targets and torch.allclose(loss_mixed, expected, atol=1e-5)
    assert not bb.mix_points()[1]._forward_hooks  # the hook is removed after the step


def _targets(labels):
    onehot = torch.nn.functional.one_hot(labels, 10).float()
    return 0.5 * onehot + 0.5 * onehot.flip(0)
