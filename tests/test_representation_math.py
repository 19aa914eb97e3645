"""kNN, linear probe and the two frozen representations, checked against references."""

import pytest
import torch
from torch import nn

from selfie_core import HybridClassifier, ResNet50Classifier, SelfieConfig, SelfieModel
from selfie_core.knn import knn_accuracy, knn_predict
from selfie_core.linear_probe import fit_linear_probe
from selfie_core.representations import calibrate_batchnorm, image_summary, trunk_features
from selfie_core.weight_transfer import transfer_pretrained


def _knn_reference(bank, bank_labels, queries, classes, k, t):
    """One query at a time, sorted by hand: the obvious definition."""
    out = []
    for q in queries:
        sims = [
            float(torch.dot(q / q.norm(), b / b.norm())) for b in bank
        ]  # cosine similarity to every training feature
        order = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * classes
        for i in order:
            votes[int(bank_labels[i])] += float(torch.exp(torch.tensor(sims[i] / t)))
        out.append(max(range(classes), key=lambda c: votes[c]))
    return torch.tensor(out)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_knn_matches_the_per_query_reference(k: int) -> None:
    gen = torch.Generator().manual_seed(1)
    bank = torch.randn(60, 8, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 4, (60,), generator=gen)
    queries = torch.randn(23, 8, generator=gen, dtype=torch.float64)
    expected = _knn_reference(bank, labels, queries, 4, k, 0.07)
    got = knn_predict(bank, labels, queries, 4, k=k, temperature=0.07, chunk_size=5)
    assert torch.equal(got, expected)


def test_knn_weights_votes_by_similarity() -> None:
    # Two close neighbours of class 0 outvote three far ones of class 1 at a low temperature,
    # and lose at a high one (equal weights: a plain majority).
    bank = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [0.1, 1.0], [0.2, 1.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    query = torch.tensor([[1.0, 0.02]])
    assert knn_predict(bank, labels, query, 2, k=5, temperature=0.07).item() == 0
    assert knn_predict(bank, labels, query, 2, k=5, temperature=1e6).item() == 1


def test_knn_accuracy_on_separated_clusters() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=gen) * 5
    labels = torch.arange(3).repeat(40)
    feats = centres[labels] + torch.randn(120, 16, generator=gen)
    assert knn_accuracy(feats[:90], labels[:90], feats[90:], labels[90:], 3) == 1.0


def test_linear_probe_learns_a_linear_rule_at_any_scale() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 10, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 3] > 0).long() + 2 * (x[:, 5] > 0).long()  # 4 linear classes
    probe = fit_linear_probe(x[:300], y[:300], 4)
    assert probe.accuracy(x[300:], y[300:]) > 0.9
    # Standardisation makes the fixed recipe blind to the features' scale.
    scaled = fit_linear_probe(x[:300] * 1000, y[:300], 4)
    assert scaled.accuracy(x[300:] * 1000, y[300:]) == probe.accuracy(x[300:], y[300:])


def _trained_looking(cfg: SelfieConfig) -> SelfieModel:
    model = SelfieModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_u_is_the_hybrid_networks_summary() -> None:
    cfg = SelfieConfig(preset="tiny")
    model = _trained_looking(cfg)
    hybrid = HybridClassifier(cfg, 10)
    transfer_pretrained(hybrid, model.state_dict(), pretrained_config=cfg, network_config=cfg)
    seen = {}
    hybrid.head.register_forward_hook(lambda m, args, out: seen.update(u=args[0]))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        hybrid.eval()(images)
        u = image_summary(model, images)
    torch.testing.assert_close(u, seen["u"])


def test_trunk_features_are_the_resnet50_networks_stage3() -> None:
    cfg = SelfieConfig(preset="tiny")
    model = _trained_looking(cfg)
    resnet = ResNet50Classifier(cfg, 10)
    transfer_pretrained(resnet, model.state_dict(), pretrained_config=cfg, network_config=cfg)
    seen = {}
    resnet.stage4.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        resnet.eval()(images)
        feats = trunk_features(model, images)
    torch.testing.assert_close(feats, seen["x"].mean(dim=(2, 3)))


def test_calibration_sets_batchnorm_to_what_it_sees() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    batches = [torch.randn(8, 3, 6, 6) * 3 + 2 for _ in range(3)]
    seen = calibrate_batchnorm(net, net, batches)
    with torch.no_grad():
        conv_out = torch.cat([net[0](b) for b in batches])
    assert seen == 24 and not net.training and net[1].momentum == 0.1
    torch.testing.assert_close(net[1].running_mean, conv_out.mean(dim=(0, 2, 3)))
