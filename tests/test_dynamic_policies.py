"""Property tests of the model-reading policies (weights, masks, shapes, determinism) and their signals."""

from __future__ import annotations

import pytest
import torch
from _dynamic_models import cnn, train_step, vit

from mixbench.losses.cross_entropy import SoftTargetCrossEntropy
from mixbench.mixups._graphcut import energy, solve, solve_exact
from mixbench.mixups.base import MixContext
from mixbench.mixups.puzzlemix import mask_transport, puzzle_energy, transport_cost
from mixbench.models.signals import build_signals, capture_attention, last_attention
from mixbench.registry import MIXUPS, import_components

import_components()

CNN_POLICIES = {"puzzlemix": {"blocks": [2, 4]}, "attentivemix": {}, "snapmix": {}, "alignmix": {},
                "comixup": {"m_part": 4}}
VIT_POLICIES = {"transmix": {}, "tokenmix": {"minimum_tokens": 2}, "mixpro": {"mask_patch_size": 8},
                "smmix": {}, "tokenmix_mixed": {"minimum_tokens": 2, "label_source": "mixed"}}


def run(name, kw, seed=0, n=8, prob=None):
    torch.manual_seed(0)
    vit_policy = name in VIT_POLICIES
    model = vit() if vit_policy else cnn()
    x = torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.arange(n) % 10
    kw = dict(kw, **({"prob": prob} if prob is not None else {}))
    policy = MIXUPS.get(name.replace("_mixed", ""))(**kw)
    g = torch.Generator().manual_seed(seed)
    loss, batch, logits = train_step(model, policy, SoftTargetCrossEntropy(10), x, y, 10, g)
    return model, x, y, loss, batch


ALL = {**CNN_POLICIES, **VIT_POLICIES}


@pytest.mark.parametrize("name", sorted(ALL))
def test_policy_properties(name):
    model, x, y, loss, batch = run(name, ALL[name])
    n = y.shape[0]
    assert batch.inputs.shape == x.shape and torch.isfinite(batch.inputs).all()
    assert torch.equal(batch.indices[0], torch.arange(n))
    for w in batch.weights:
        assert w.shape == (n,) and torch.isfinite(w).all() and (w >= -1e-6).all()
    expected = torch.zeros(n, 10)
    for idx, w in zip(batch.indices, batch.weights):
        expected[torch.arange(n), y[idx]] += w
    torch.testing.assert_close(batch.targets, expected)
    if batch.mask is not None:
        assert batch.mask.shape == (n, 1, 16, 16)
        assert ((batch.mask >= 0) & (batch.mask <= 1)).all()
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(ALL))
def test_policy_deterministic_given_generator(name):
    a = run(name, ALL[name], seed=3)[4]
    b = run(name, ALL[name], seed=3)[4]
    torch.testing.assert_close(a.inputs, b.inputs)
    for wa, wb in zip(a.weights, b.weights):
        torch.testing.assert_close(wa, wb)


@pytest.mark.parametrize("name", ["puzzlemix", "attentivemix", "snapmix", "transmix", "mixpro", "tokenmix"])
def test_prob_zero_leaves_batch_unmixed(name):
    _, x, y, _, batch = run(name, ALL[name], prob=0.0)
    torch.testing.assert_close(batch.inputs, x)
    torch.testing.assert_close(batch.targets, torch.nn.functional.one_hot(y, 10).float())


def test_mask_policies_weight_is_realised_area():
    for name in ("puzzlemix", "attentivemix"):
        batch = run(name, ALL[name])[4]
        torch.testing.assert_close(batch.weights[0], batch.mask.flatten(1).mean(1))
        torch.testing.assert_close(batch.weights[0] + batch.weights[1], torch.ones(8))


def test_puzzlemix_mask_values_and_pixels():
    _, x, y, _, batch = run("puzzlemix", {"blocks": [4], "transport": False})
    assert set(batch.mask.unique().tolist()) <= {0.0, 0.5, 1.0}
    m = batch.mask
    torch.testing.assert_close(batch.inputs, m * x + (1 - m) * x[batch.indices[1]])


def test_saliency_signal_eval_mode_no_param_grads():
    model = cnn()
    model.train()
    bn = model.backbone.stem[1]
    before = bn.running_mean.clone()
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    s = build_signals(model, x, y, ("saliency",))["saliency"]()
    assert s.shape == (4, 16, 16) and (s >= 0).all()
    assert torch.equal(bn.running_mean, before)  # eval mode: BN statistics untouched
    assert model.training and bn.training
    assert all(p.grad is None for p in model.parameters())
    x2 = x.clone().requires_grad_(True)
    model.eval()
    torch.nn.functional.cross_entropy(model.head(model.backbone(x2)), y).backward()
    torch.testing.assert_close(s, x2.grad.pow(2).mean(1).sqrt())


@pytest.mark.parametrize("fused", [True, False])
def test_attention_capture_equals_manual_recomputation(fused):
    model = vit(fused=fused).eval()
    x = torch.randn(3, 1, 16, 16)
    attn = last_attention(model)
    seen = {}
    attn.qkv.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    with torch.no_grad(), capture_attention(model, ("cls", "patch")) as got:
        model.head(model.backbone(x))
    # manual: q, k from the block input, softmax(q kᵀ · scale)
    b, length, _ = seen["x"].shape
    qkv = attn.qkv(seen["x"]).reshape(b, length, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    a = torch.softmax(qkv[0] @ qkv[1].transpose(-2, -1) * attn.scale, -1)
    torch.testing.assert_close(got["cls"], a[:, :, 0, 1:].mean(1))
    torch.testing.assert_close(got["patch"], a[:, :, 1:, 1:].mean((1, 2)))
    if not fused:  # the unfused timm path materialises the same map: compare with what it computed
        maps = {}
        attn.attn_drop.register_forward_hook(lambda m, i, o: maps.update(a=i[0]))
        with torch.no_grad():
            model.backbone(x)
        torch.testing.assert_close(got["cls"], maps["a"][:, :, 0, 1:].mean(1))


def test_transmix_relabel_uses_attention_share():
    policy = MIXUPS.get("transmix")(switch_prob=1.0)
    model = vit()
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    ctx = MixContext(generator=torch.Generator().manual_seed(0), model=model)
    batch = policy(x, y, 10, ctx)
    attn = torch.rand(4, 16)
    out = policy.relabel_with(batch, attn)
    m = torch.nn.functional.interpolate(batch.extras["partner_mask"].float(), size=4).flatten(1)
    lam1 = (m * attn).sum(1) / attn.sum(1)
    expected_partner = 0.5 * (1 - batch.weights[0]) + 0.5 * lam1
    torch.testing.assert_close(out.weights[1], expected_partner)
    torch.testing.assert_close(out.weights[0] + out.weights[1], torch.ones(4))


def test_tokenmix_weights_right_way_round():
    """w_a = Σ(1−M)·s_i (anchor's kept tokens), w_b = ΣM·s_π (partner's pasted tokens): OpenMixup swaps them."""
    policy = MIXUPS.get("tokenmix")(minimum_tokens=2, switch_prob=1.0, label_source="clean")
    model = vit()
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    score = torch.zeros(4, 16)
    score[:, 0] = 1.0  # all attention on token 0
    ctx = MixContext(generator=torch.Generator().manual_seed(0), model=model,
                     signals={"attention": lambda: {"cls": score}})
    batch = policy(x, y, 10, ctx)
    m = batch.extras["partner_tokens"]
    torch.testing.assert_close(batch.weights[0], 1 - m[:, 0])
    torch.testing.assert_close(batch.weights[1], m[:, 0])
    assert (m.sum(1) == 10).all()  # ⌊0.5·16⌋ + 2 partner tokens per sample


def test_smmix_pastes_max_window_into_min_window():
    from mixbench.mixups.smmix import max_min_windows

    score = torch.zeros(2, 4, 4)
    score[0, 3, 3] = 5.0  # image 0: max at bottom-right
    score[1, 0, 0] = 5.0  # image 1: max at top-left
    score[0, 0, 0] = -1.0
    dst, src = max_min_windows(score, torch.tensor(2), torch.tensor([1, 0]))
    assert dst[0].tolist() != [2, 2]  # the min window of image 0 avoids its max
    assert src[0].tolist() == [0, 0] and src[1].tolist() == [2, 2]


def test_graphcut_solver_matches_bruteforce_on_small_grids():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(30, 3, 16, 16, generator=gen)
    sal = torch.rand(30, 16, 16, generator=gen)
    u, v, h, _ = puzzle_energy(sal, images, torch.randperm(30, generator=gen), torch.rand(30, generator=gen), 2,
                               1.2, 0.5, 0.2, 4, 3)
    exact, got = solve_exact(u, v, h), solve(u, v, h)
    gap = energy(got, u, v, h) - energy(exact, u, v, h)
    assert (gap >= -1e-6).all()
    assert (gap <= 1e-6).float().mean() >= 0.9


def test_transport_is_a_partial_permutation_into_the_mask():
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(5, 4, 4, generator=gen) > 0.5).float()
    sal = torch.rand(5, 4, 4, generator=gen)
    src = mask_transport(mask, sal / sal.sum((1, 2), keepdim=True), 0.8, transport_cost(4, torch.device("cpu")))
    assert src.shape == (5, 16) and ((src >= 0) & (src < 16)).all()
    moved = src != torch.arange(16)
    for row, mv in zip(src, moved):  # a moved source lands in one destination only
        assert len(set(row[mv].tolist())) == int(mv.sum())


def test_snapmix_weights_need_not_sum_to_one():
    batch = run("snapmix", {})[4]
    total = batch.weights[0] + batch.weights[1]
    assert not torch.allclose(total, torch.ones_like(total))


def test_comixup_smaller_last_group_counts_each_input_once():
    policy = MIXUPS.get("comixup")(m_part=5, m_block_num=2, m_niter=1)
    x, y = torch.randn(7, 1, 8, 8), torch.arange(7)
    g = torch.Generator().manual_seed(0)
    batch = policy.mix(x, y, 10, MixContext(generator=g, signals={"saliency": lambda: x[:, 0].abs()}))
    torch.testing.assert_close(batch.targets.sum(1), torch.ones(7))
    grid = batch.extras["grid"]
    assert (grid[:5] < 5).all() and (grid[5:] >= 5).all()  # outputs take blocks from their own group only
    for idx, w in zip(batch.indices, batch.weights):  # weight = realised area of that source
        area = (grid == idx.view(-1, 1, 1)).float().mean((1, 2))
        torch.testing.assert_close(w, area * (w > 0))


def test_comixup_sequential_assignment_lowers_energy_and_spreads_inputs():
    from mixbench.mixups.base import sample_gamma
    from mixbench.mixups.comixup import assign, block_counts, comix_energy, compatibility

    gen = torch.Generator().manual_seed(0)
    m, b = 8, 4
    sal = torch.rand(3, m, 16, 16, generator=gen) ** 4
    policy = MIXUPS.get("comixup")(m_part=m)
    unary, comp = policy.unaries(sal, sample_gamma(2.0, (3, m), gen, torch.device("cpu"))), compatibility(sal, 0.001)
    init = torch.randint(m, (3, m, b, b), generator=gen)
    labels = assign(unary, comp, init, 0.32, 1.0, 0.83, 4, m)
    args = (unary, comp, 0.32, 1.0, 0.83)
    assert (comix_energy(labels, *args) < comix_energy(init, *args)).all()
    # the diversity threshold keeps any input below about two outputs' worth of blocks
    assert (block_counts(labels, m).sum(1) / (b * b)).max() <= 2.0


def test_comixup_resolve_cost_marks_pairs_of_outputs_with_the_same_inputs():
    from mixbench.mixups.comixup import resolve_cost

    # outputs 0 and 2 use inputs {1, 2}, output 1 uses {0, 1, 3}, output 3 only input 3
    counts = torch.tensor([[[0., 6, 10, 0], [5, 4, 0, 7], [0, 9, 7, 0], [0, 0, 0, 16]]])
    want = torch.zeros(1, 4, 4)
    want[0, 0, 1] = 1  # the first of the pair pays on the first input of the set
    want[0, 2, 2] = 1  # the second on the second
    torch.testing.assert_close(resolve_cost(counts), want)
    # a set of one input is left alone, as in the reference
    assert resolve_cost(torch.tensor([[[16., 0], [16, 0]]])).sum() == 0


def test_comixup_identical_outputs_cost_nothing_extra_below_the_threshold():
    # The reference's hard threshold charges diversity only where the other outputs use more than τb² blocks of
    # an input, so a copied output costs just its own unary and smoothness (why small groups get duplicates).
    from mixbench.mixups.comixup import comix_energy

    gen = torch.Generator().manual_seed(0)
    m, b, beta = 4, 4, 0.32
    unary, comp = -torch.rand(1, m, b, b, generator=gen), torch.eye(m).unsqueeze(0)
    half = torch.zeros(b, b, dtype=torch.long)
    half[:, 2:] = 1
    dup = torch.stack([half, half, torch.full((b, b), 2), torch.full((b, b), 3)]).unsqueeze(0)  # outputs 0 and 1 identical
    u = unary[0].permute(1, 2, 0).expand(m, b, b, m)
    w = torch.full((m, b - 1, b), beta / 16), torch.full((m, b, b - 1), beta / 16)
    own = energy(dup[0], u, w[0], w[1].contiguous(), dist="potts").sum()
    torch.testing.assert_close(comix_energy(dup, unary, comp, beta, 1.0, 0.83)[0], own)  # 8 ≤ 13.28 blocks
    trip = dup.clone()
    trip[0, 2] = half  # a third copy: the others now use 16 > 13.28 blocks of inputs 0 and 1
    own = energy(trip[0], u, w[0], w[1].contiguous(), dist="potts").sum()
    assert comix_energy(trip, unary, comp, beta, 1.0, 0.83)[0] > own + 1.0


def test_potts_messages_match_the_dense_distance():
    from mixbench.mixups._graphcut import belief_propagation

    gen = torch.Generator().manual_seed(0)
    unary = torch.rand(4, 3, 3, 5, generator=gen)
    vert, horz = torch.rand(4, 2, 3, generator=gen), torch.rand(4, 3, 2, generator=gen)
    dense = belief_propagation(unary, vert, horz, 4, dist=1.0 - torch.eye(5))
    torch.testing.assert_close(belief_propagation(unary, vert, horz, 4, dist="potts"), dense)
    assert torch.equal(solve(unary, vert, horz, dist="potts"), solve(unary, vert, horz, dist=1.0 - torch.eye(5)))


def test_attentivemix_extractor_checkpoint_layout(tmp_path):
    """A torchvision state dict loads (with or without the dropped classifier); one whose body keys do not match
    (a DDP "module." prefix) is a config error instead of a silently random extractor."""
    import torchvision

    from mixbench.errors import ConfigError
    from mixbench.mixups.attentivemix import FrozenExtractor

    state = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    torch.save(state, tmp_path / "full.pth")
    torch.save({k: v for k, v in state.items() if not k.startswith("classifier.")}, tmp_path / "body.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pth")
    for name in ("full", "body"):
        net = FrozenExtractor("mobilenet_v3_small", str(tmp_path / f"{name}.pth"))
        assert torch.equal(net.body[0][0][0].weight, state["features.0.0.weight"])
    with pytest.raises(ConfigError, match="not a torchvision 'mobilenet_v3_small' state dict"):
        FrozenExtractor("mobilenet_v3_small", str(tmp_path / "ddp.pth"))
