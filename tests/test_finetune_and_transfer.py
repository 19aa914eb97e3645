import pytest
import torch

from selfie_core import (
    HybridClassifier,
    ResNet50Classifier,
    SelfieConfig,
    SelfieModel,
    WeightTransferError,
    build_finetune_network,
    transfer_pretrained,
)


@pytest.mark.parametrize("kind", ["resnet50", "hybrid"])
@pytest.mark.parametrize("size", [32, 224])
def test_finetune_networks_classify(kind: str, size: int) -> None:
    cfg = SelfieConfig(preset="tiny", image_size=size)
    enc = build_finetune_network(kind, cfg, num_classes=10)
    assert enc(torch.randn(2, 3, size, size)).shape == (2, 10)


def _pretrained() -> tuple[SelfieConfig, dict[str, torch.Tensor]]:
    cfg = SelfieConfig(preset="tiny")
    model = SelfieModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return cfg, model.state_dict()


def test_resnet50_gets_exactly_the_trunk() -> None:
    cfg, state = _pretrained()
    enc = ResNet50Classifier(cfg, 10)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    copied = transfer_pretrained(enc, state, pretrained_config=cfg, network_config=cfg)
    after = enc.state_dict()
    assert copied and all(name.startswith("trunk.") for name in copied)
    assert set(copied) == {k for k in after if k.startswith("trunk.")}
    for name in copied:
        assert torch.equal(after[name], state["patch_network." + name])
    for name in after:
        if name not in copied:
            assert torch.equal(after[name], before[name]), f"{name} must stay untouched"


def test_hybrid_gets_p_and_a() -> None:
    cfg, state = _pretrained()
    enc = HybridClassifier(cfg, 10)
    head_before = enc.head.weight.clone()
    copied = transfer_pretrained(enc, state, pretrained_config=cfg, network_config=cfg)
    assert any(n.startswith("attention_pool.") for n in copied)
    assert torch.equal(enc.attention_pool.u0, state["attention_pool.u0"])
    assert torch.equal(enc.head.weight, head_before)
    assert not any(n.startswith("head.") for n in copied)


def test_preset_mismatch_is_refused() -> None:
    cfg, state = _pretrained()
    other = SelfieConfig(preset="small")
    with pytest.raises(WeightTransferError, match="preset 'tiny'"):
        transfer_pretrained(
            ResNet50Classifier(other, 10), state, pretrained_config=cfg, network_config=other
        )


def test_shape_mismatch_is_refused() -> None:
    cfg, state = _pretrained()
    state = dict(state)
    state["patch_network.trunk.stem.0.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(WeightTransferError, match="shape"):
        transfer_pretrained(
            ResNet50Classifier(cfg, 10), state, pretrained_config=cfg, network_config=cfg
        )


def test_checkpoint_with_fewer_attention_layers_is_refused_with_a_reason() -> None:
    cfg, state = _pretrained()
    old = {k: v for k, v in state.items() if not k.startswith("attention_pool.layers.layers.1.")}
    with pytest.raises(WeightTransferError, match="older definition of preset 'tiny'"):
        transfer_pretrained(
            HybridClassifier(cfg, 10), old, pretrained_config=cfg, network_config=cfg
        )
