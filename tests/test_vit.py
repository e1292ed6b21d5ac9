"""The ViT model: shapes, backends sharing one weight layout, the features/head split, validation."""

import pytest
import torch
from torch import nn

from labformer import record_attention
from labformer.attention import attention_rollout
from labformer.models.vit import ViT, ViTConfig

SMALL = dict(image_size=28, channels=1, patch_size=7, dim=32, depth=2, num_heads=4, mlp_dim=64)


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("position", ["learned", "sincos"])
def test_backends_share_weights_and_outputs(pool, position):
    torch.manual_seed(0)
    ours = ViT(ViTConfig(**SMALL, pool=pool, position=position)).double()
    theirs = ViT(ViTConfig(**SMALL, pool=pool, position=position, backend="torch")).double()
    assert isinstance(theirs.encoder, nn.TransformerEncoder)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    images = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(ours(images), theirs(images), atol=1e-10, rtol=1e-10)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(images), theirs(images), atol=1e-10, rtol=1e-10)
    # and the other way round
    ours.load_state_dict(ViT(ViTConfig(**SMALL, pool=pool, position=position, backend="torch")).double().state_dict())


def test_features_and_head_split():
    torch.manual_seed(0)
    model = ViT(ViTConfig(**SMALL))
    images = torch.randn(3, 1, 28, 28)
    features = model.forward_features(images)
    assert features.shape == (3, 17, 32)  # 16 patches + class token
    torch.testing.assert_close(model.forward_head(features), model(images))
    # the patch embedding is a stride-p convolution
    conv = nn.Conv2d(1, 32, 7, stride=7)
    conv.weight.data = model.patch_embed.weight.reshape(32, 1, 7, 7)
    conv.bias.data = model.patch_embed.bias
    expected = conv(images).flatten(2).transpose(1, 2)  # (B, 16, 32), patches row by row
    torch.testing.assert_close(model.patch_embed(model.patches(images)), expected, atol=1e-5, rtol=1e-5)


def test_attention_maps_and_rollout():
    torch.manual_seed(0)
    model = ViT(ViTConfig(**SMALL)).eval()
    with record_attention(model) as maps:
        model(torch.randn(2, 1, 28, 28))
    assert [m.shape for m in maps] == [(2, 4, 17, 17)] * 2
    rollout = attention_rollout(maps)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 17))
    # brute force: product of 0.5 (A + I) per layer (rows of A + I sum to 2)
    expected = torch.eye(17).expand(2, 17, 17)
    for m in maps:
        expected = (0.5 * (m.mean(1) + torch.eye(17))) @ expected
    torch.testing.assert_close(rollout, expected)


def test_cifar_shape_and_colour_patches():
    model = ViT(ViTConfig(image_size=32, channels=3, patch_size=4, dim=32, depth=1, num_heads=2, mlp_dim=64))
    images = torch.randn(2, 3, 32, 32)
    assert model(images).shape == (2, 10)
    patches = model.patches(images)  # (2, 64, 48)
    torch.testing.assert_close(patches[1, 8 + 3].reshape(3, 4, 4), images[1, :, 4:8, 12:16])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(patch_size=5), r"patch_size \(5\) must divide image_size \(28\)"),
        (dict(num_heads=5), r"num_heads \(5\) must divide dim \(32\)"),
        (dict(dim=0), "dim must be a positive integer; got 0"),
        (dict(pool="max"), "pool must be one of"),
        (dict(dropout=1.5), r"dropout must be in \[0, 1\); got 1.5"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig(**{**SMALL, **overrides})


def test_wrong_image_shape():
    with pytest.raises(ValueError, match=r"images must have shape \(batch, 1, 28, 28\); got \(2, 3, 28, 28\)"):
        ViT(ViTConfig(**SMALL))(torch.randn(2, 3, 28, 28))


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("position", ["learned", "sincos"])
def test_evaluation_without_gradients_takes_the_fast_path_and_gives_the_same_logits(pool, position, monkeypatch):
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=28, patch_size=7, dim=32, depth=3, num_heads=4, mlp_dim=64, pool=pool, position=position
    )
    model = ViT(config).double().eval()
    images = torch.randn(5, 1, 28, 28, dtype=torch.double)
    reference = model(images)  # gradients on: the layers' own forward
    calls = []
    original = type(model.encoder).fast
    monkeypatch.setattr(type(model.encoder), "fast", lambda self, x, caches=None: calls.append(1) or original(self, x))
    for context in (torch.no_grad(), torch.inference_mode()):
        with context:
            torch.testing.assert_close(model(images), reference)
    assert len(calls) == 2  # both went through the fast path
    with torch.no_grad(), record_attention(model) as maps:
        torch.testing.assert_close(model(images), reference)  # recording needs the reference path ...
    assert len(maps) == 3 and len(calls) == 2  # ... and gets every layer's weights
    model.train()
    with torch.no_grad():
        model(images)
    assert len(calls) == 2  # training mode (dropout) never takes it


def test_norm_stem_is_layer_norms_around_the_patch_embedding():
    model = ViT(ViTConfig(**{**SMALL, "stem": "norm"})).double()
    images = torch.randn(3, 1, 28, 28, dtype=torch.double)
    patches = images.unfold(2, 7, 7).unfold(3, 7, 7).reshape(3, 16, 49)  # row by row, each patch (7, 7)
    expected = torch.nn.functional.layer_norm(patches, (49,), model.patch_norm_in.weight, model.patch_norm_in.bias)
    expected = torch.nn.functional.layer_norm(model.patch_embed(expected), (32,))
    tokens = model.tokens(images)[:, 1:] - model.position.table[1:]
    torch.testing.assert_close(tokens, expected)


def test_conv_stem_tokens_are_the_pooled_feature_map_row_by_row():
    model = ViT(ViTConfig(**{**SMALL, "patch_size": 4, "stem": "conv"})).double()
    images = torch.randn(2, 1, 28, 28, dtype=torch.double)
    conv1, conv2 = model.conv_stem[0], model.conv_stem[3]
    assert (conv1.out_channels, conv2.out_channels) == (8, 32)  # dim / 4 (at least 8), then dim
    F = torch.nn.functional
    x = F.max_pool2d(F.relu(F.conv2d(images, conv1.weight, conv1.bias, padding=1)), 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, conv2.weight, conv2.bias, padding=1)), 2)  # (2, 32, 7, 7)
    tokens = model.tokens(images)
    assert tokens.shape == (2, 50, 32)
    torch.testing.assert_close(tokens[:, 1:] - model.position.table[1:], x.flatten(2).transpose(1, 2))
    model(images).sum().backward()
    assert conv1.weight.grad is not None and conv1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="patch_size must be 2, 4, 8...; got 7"):
        ViTConfig(**{**SMALL, "stem": "conv"})


def test_conv_stem_width_and_batch_norm():
    """stem_width sets the earlier stages' channels; stem_norm puts a BatchNorm (batch statistics in
    training, running ones in evaluation) between each convolution, which then has no bias, and its ReLU."""
    model = ViT(ViTConfig(**{**SMALL, "patch_size": 4, "stem": "conv", "stem_width": 12, "stem_norm": True})).double()
    conv1, norm1, conv2, norm2 = (model.conv_stem[i] for i in (0, 1, 4, 5))
    assert (conv1.out_channels, conv2.out_channels) == (12, 32) and conv1.bias is None and conv2.bias is None
    images = torch.randn(6, 1, 28, 28, dtype=torch.double)
    F = torch.nn.functional

    def stage(x, conv, norm, training):
        x = F.conv2d(x, conv.weight, None, padding=1)
        if training:
            x = (x - x.mean((0, 2, 3), keepdim=True)) / (x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
        else:
            x = (x - norm.running_mean.view(1, -1, 1, 1)) / (norm.running_var.view(1, -1, 1, 1) + 1e-5).sqrt()
        return F.max_pool2d(F.relu(x * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)), 2)

    for training in (True, False):
        model.train(training)
        expected = stage(stage(images, conv1, norm1, training), conv2, norm2, training)
        tokens = model.tokens(images)[:, 1:] - model.position.table[1:]
        torch.testing.assert_close(tokens, expected.flatten(2).transpose(1, 2))
    assert norm1.num_batches_tracked == 1  # the training pass updated the running statistics
    with pytest.raises(ValueError, match="stem_norm is for the 'conv' stem only"):
        ViTConfig(**{**SMALL, "stem_norm": True})
    with pytest.raises(ValueError, match="stem_width is for the 'conv' and 'convnet' stems only"):
        ViTConfig(**{**SMALL, "stem_width": 8})
    with pytest.raises(ValueError, match="stem_width must be a positive integer"):
        ViTConfig(**{**SMALL, "patch_size": 4, "stem": "conv", "stem_width": 0})


def test_convnet_stem_is_five_convolutions_with_batch_norm_pooled_after_each_halving():
    """patch 8 on 32 x 32: one convolution at full resolution, then two per halving; the pooling follows
    each stage's last convolution, before its BatchNorm; channels stem_width, doubled, then dim."""
    config = dict(image_size=32, channels=3, patch_size=8, dim=24, depth=1, num_heads=2, mlp_dim=32)
    model = ViT(ViTConfig(**config, stem="convnet", stem_width=4)).double()
    convs = [m for m in model.conv_stem if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.conv_stem if isinstance(m, nn.BatchNorm2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 4), (4, 8), (8, 8), (8, 24), (24, 24)]
    assert all(c.bias is None for c in convs)
    F = torch.nn.functional
    images = torch.randn(5, 3, 32, 32, dtype=torch.double)
    for training in (True, False):
        model.train(training)
        x = images
        for index, (conv, norm) in enumerate(zip(convs, norms)):
            x = F.conv2d(x, conv.weight, padding=1)
            if index in (0, 2, 4):
                x = F.max_pool2d(x, 2)
            if training:
                mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
            else:
                mean, var = norm.running_mean.view(1, -1, 1, 1), norm.running_var.view(1, -1, 1, 1)
            x = F.relu((x - mean) / (var + 1e-5).sqrt() * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1))
        assert x.shape == (5, 24, 4, 4)
        tokens = model.tokens(images)[:, 1:] - model.position.table[1:]
        torch.testing.assert_close(tokens, x.flatten(2).transpose(1, 2))
    default = ViT(ViTConfig(**config, stem="convnet"))
    widths = [m.out_channels for m in default.conv_stem if isinstance(m, nn.Conv2d)]
    assert widths == [8, 16, 16, 24, 24]  # dim / 4, at least 8, then doubled
    with pytest.raises(ValueError, match="stem_norm is for the 'conv' stem only"):
        ViTConfig(**config, stem="convnet", stem_norm=True)
    with pytest.raises(ValueError, match="stem 'convnet' pools by 2 until the patch grid"):
        ViTConfig(**{**config, "patch_size": 6, "image_size": 36}, stem="convnet")
