"""labformer.encoder against torch.nn.TransformerEncoderLayer / Encoder / DecoderLayer / Decoder."""

import pytest
import torch
from torch import nn

from labformer import Decoder, DecoderLayer, Encoder, EncoderLayer, FeedForward


def copy_into(ours: nn.Module, theirs: nn.Module) -> None:
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, tensor in theirs.state_dict().items():
        assert ours.state_dict()[name].shape == tensor.shape, name
    ours.load_state_dict(theirs.state_dict())


def masks_for(kind: str, B: int, T: int, S: int):
    """(ours: mask, key_mask, causal), (torch: attn_mask, key_padding_mask, is_causal)."""
    torch.manual_seed(7)
    mask = key_mask = None
    if kind in ("bool", "bool+key"):
        mask = torch.rand(T, S) > 0.4
        mask[:, 0] = True
    if kind in ("key", "bool+key"):
        key_mask = torch.rand(B, S) > 0.3
        key_mask[:, 0] = True
    if kind == "causal":
        return (None, None, True), (nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64), None, True)
    return (mask, key_mask, False), (None if mask is None else ~mask, None if key_mask is None else ~key_mask, False)


def compare(ours_fn, theirs_fn, inputs, ours, theirs, real_rows=None):
    out, expected = ours_fn(), theirs_fn()
    if real_rows is not None:  # torch's nested-tensor fast path zeroes padded positions
        out, expected = out[real_rows], expected[real_rows]
    torch.testing.assert_close(out, expected, atol=1e-9, rtol=1e-9)
    if torch.is_grad_enabled():
        grads = torch.autograd.grad(out.square().sum(), list(ours.parameters()) + inputs)
        expected_grads = torch.autograd.grad(expected.square().sum(), list(theirs.parameters()) + inputs)
        for name_grad in zip(grads, expected_grads):
            torch.testing.assert_close(*name_grad, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("mode", ["train", "eval", "eval-no-grad"])
@pytest.mark.parametrize("masks", ["none", "bool", "key", "bool+key", "causal"])
@pytest.mark.parametrize(("tokens", "dim", "heads"), [(5, 16, 4), (9, 24, 1)])
def test_encoder_layer_matches_torch(norm_first, activation, mode, masks, tokens, dim, heads):
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(
        dim, heads, 2 * dim, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).double()
    ours = EncoderLayer(dim, heads, 2 * dim, activation=activation, norm_first=norm_first).double()
    copy_into(ours, theirs)
    ours.train(mode == "train")
    theirs.train(mode == "train")
    x = torch.randn(3, tokens, dim, dtype=torch.float64, requires_grad=True)
    (mask, key_mask, causal), (attn_mask, key_padding_mask, is_causal) = masks_for(masks, 3, tokens, tokens)
    with torch.set_grad_enabled(mode != "eval-no-grad"):
        compare(
            lambda: ours(x, mask=mask, key_mask=key_mask, causal=causal),
            lambda: theirs(x, src_mask=attn_mask, src_key_padding_mask=key_padding_mask, is_causal=is_causal),
            [x], ours, theirs,
        )  # fmt: skip


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval-no-grad"])
@pytest.mark.parametrize("masks", ["none", "key", "causal"])
def test_encoder_matches_torch(norm_first, mode, masks):
    torch.manual_seed(1)
    dim, heads, tokens = 16, 4, 6
    layer = nn.TransformerEncoderLayer(dim, heads, 32, dropout=0.0, batch_first=True, norm_first=norm_first)
    theirs = nn.TransformerEncoder(layer, 3, norm=nn.LayerNorm(dim), enable_nested_tensor=False).double()
    for p in theirs.parameters():  # torch's clones start equal; make the layers differ
        nn.init.normal_(p, std=0.3)
    ours = Encoder(dim, heads, 32, 3, norm_first=norm_first, final_norm=True).double()
    copy_into(ours, theirs)
    ours.train(mode == "train")
    theirs.train(mode == "train")
    x = torch.randn(2, tokens, dim, dtype=torch.float64, requires_grad=True)
    (mask, key_mask, causal), (attn_mask, key_padding_mask, is_causal) = masks_for(masks, 2, tokens, tokens)
    with torch.set_grad_enabled(mode == "train"):
        compare(
            lambda: ours(x, mask=mask, key_mask=key_mask, causal=causal),
            lambda: theirs(x, mask=attn_mask, src_key_padding_mask=key_padding_mask, is_causal=is_causal),
            [x], ours, theirs,
        )  # fmt: skip


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("masks", ["none", "causal+memory_key", "bool+key"])
def test_decoder_layer_and_stack_match_torch(norm_first, activation, mode, masks):
    torch.manual_seed(2)
    dim, heads, T, S, B = 12, 3, 5, 7, 2
    kwargs = dict(dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first)
    theirs_layer = nn.TransformerDecoderLayer(dim, heads, 24, **kwargs).double()
    ours_layer = DecoderLayer(dim, heads, 24, activation=activation, norm_first=norm_first).double()
    copy_into(ours_layer, theirs_layer)
    theirs_stack = nn.TransformerDecoder(
        nn.TransformerDecoderLayer(dim, heads, 24, **kwargs), 2, norm=nn.LayerNorm(dim)
    ).double()
    for p in theirs_stack.parameters():
        nn.init.normal_(p, std=0.3)
    ours_stack = Decoder(dim, heads, 24, 2, activation=activation, norm_first=norm_first, final_norm=True).double()
    copy_into(ours_stack, theirs_stack)
    x = torch.randn(B, T, dim, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(B, S, dim, dtype=torch.float64, requires_grad=True)
    ours_kw, theirs_kw = {}, {}
    if masks == "causal+memory_key":
        memory_key_mask = torch.rand(B, S) > 0.3
        memory_key_mask[:, 0] = True
        ours_kw = dict(causal=True, memory_key_mask=memory_key_mask)
        theirs_kw = dict(
            tgt_mask=nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64),
            tgt_is_causal=True,
            memory_key_padding_mask=~memory_key_mask,
        )
    elif masks == "bool+key":
        mask, key_mask, memory_mask = torch.rand(T, T) > 0.4, torch.rand(B, T) > 0.3, torch.rand(T, S) > 0.4
        mask[:, 0] = key_mask[:, 0] = memory_mask[:, 0] = True
        ours_kw = dict(mask=mask, key_mask=key_mask, memory_mask=memory_mask)
        theirs_kw = dict(tgt_mask=~mask, tgt_key_padding_mask=~key_mask, memory_mask=~memory_mask)
    for ours, theirs in ((ours_layer, theirs_layer), (ours_stack, theirs_stack)):
        ours.train(mode == "train")
        theirs.train(mode == "train")
        compare(lambda: ours(x, memory, **ours_kw), lambda: theirs(x, memory, **theirs_kw), [x, memory], ours, theirs)  # noqa: B023


def test_lab_shapes():
    """Part 4 and the Extra of LAB.md: (2, 64, 64) -> (2, 64, 10); decoder (2, 5, 10) -> (2, 5, 100)."""
    x = Encoder(64, 8, 256, 2, norm_first=True, final_norm=True)(torch.randn(2, 64, 64))
    assert nn.Linear(64, 10)(x).shape == (2, 64, 10)
    y = Decoder(10, 2, 40, 2, norm_first=True, final_norm=True)(
        torch.randn(2, 5, 10), torch.randn(2, 5, 10), causal=True
    )
    assert nn.Linear(10, 100)(y).shape == (2, 5, 100)


def test_feed_forward_is_the_lab_block():
    torch.manual_seed(0)
    block = FeedForward(8, 32)
    x = torch.randn(4, 3, 8)
    expected = block.linear2(torch.relu(block.linear1(x)))
    torch.testing.assert_close(block(x), expected)


def test_encoder_layers_start_different():
    encoder = Encoder(16, 4, 32, 3)
    weights = [layer.linear1.weight for layer in encoder.layers]
    assert not torch.equal(weights[0], weights[1])


def test_bad_input():
    with pytest.raises(ValueError, match=r"dim \(10\) must be divisible by num_heads \(4\)"):
        EncoderLayer(10, 4, 20)
    with pytest.raises(ValueError, match=r"activation must be one of \['gelu', 'relu', 'relu2'\]; got 'tanh'"):
        EncoderLayer(8, 2, 16, activation="tanh")
    with pytest.raises(ValueError, match="num_layers must be a positive integer; got 0"):
        Encoder(8, 2, 16, 0)
    with pytest.raises(ValueError, match="mlp_dim must be a positive integer; got -1"):
        FeedForward(8, -1)


def test_feed_forward_precision_runs_only_the_feed_forward_blocks_in_bf16():
    from labformer.encoder import feed_forward_precision

    torch.manual_seed(0)
    encoder = Encoder(32, 4, 64, 2, norm_first=True, activation="gelu", final_norm=True)
    x = torch.randn(3, 7, 32, requires_grad=True)
    reference = encoder(x, causal=True)
    seen: dict[str, torch.dtype] = {}
    for name, module in encoder.named_modules():
        if name.endswith(("linear1", "out_proj")):
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.dtype))
    feed_forward_precision(encoder, torch.bfloat16)
    mixed = encoder(x, causal=True)
    assert seen["layers.0.linear1"] == torch.bfloat16 and seen["layers.0.self_attn.out_proj"] == torch.float32
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, reference, atol=5e-2, rtol=5e-2)  # bf16 has 8 bits of mantissa
    assert not torch.equal(mixed, reference)
    mixed.sum().backward()
    assert encoder.layers[0].linear1.weight.grad.dtype == torch.float32  # the weights stay float32
    encoder.eval()
    with torch.no_grad():  # the evaluation fast path keeps the chosen precision
        torch.testing.assert_close(encoder(x), encoder(x.detach().clone().requires_grad_()).detach())
    feed_forward_precision(encoder, None)
    torch.testing.assert_close(encoder.train()(x, causal=True), reference)
