"""labformer.attention against the lab's published values, torch.nn.MultiheadAttention and properties."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from labformer import (
    ConcatHeadsAttention,
    DecoderLayer,
    EncoderLayer,
    MultiHeadAttention,
    attention_weights,
    record_attention,
    scaled_dot_product_attention,
)
from labformer.attention import KVCache
from labformer.attention import functional as attention_module
from labformer.attention.functional import _reference_attention


def rows(values):
    return F.normalize(torch.tensor(values, dtype=torch.float32), dim=1)


LAB_Q1 = rows([[3, 3]])
LAB_K = rows([[2, 1.5], [-4, 3], [0, 3], [-1, -4]])
LAB_Q4 = rows([[3, 3], [-1, 3.2], [0.2, -0.4], [0, -1]])


# --- the lab's values (LAB.md, Part 1) ---


def test_lab_single_query():
    v = rows([[-1, 2], [3, 4], [-2, -1], [0, 2]])
    out = scaled_dot_product_attention(LAB_Q1, LAB_K, v)
    assert torch.allclose(out, torch.tensor([[-0.3584, 0.4563]]), atol=1e-4)
    weights = attention_weights(LAB_Q1, LAB_K)
    assert weights.argmax().item() == 0 and abs(weights[0, 0].item() - 0.394) < 1e-3


def test_lab_batched_and_causal():
    v = rows([[-1, 2], [3, 4], [2, -3], [0, 2]])[None]
    out = scaled_dot_product_attention(LAB_Q4[None], LAB_K[None], v)
    expected = torch.tensor([[0.1089, 0.3322], [0.2860, 0.2639], [0.0600, 0.6791], [0.0986, 0.7087]])
    assert torch.allclose(out[0], expected, atol=1e-4)
    tril = torch.ones(4, 4, dtype=torch.bool).tril()
    expected_masked = torch.tensor([[-0.4472, 0.8944], [0.1639, 0.8393], [0.1129, 0.3967], [0.0986, 0.7087]])
    assert torch.allclose(
        scaled_dot_product_attention(LAB_Q4[None], LAB_K[None], v, tril)[0], expected_masked, atol=1e-4
    )
    assert torch.allclose(
        scaled_dot_product_attention(LAB_Q4[None], LAB_K[None], v, causal=True)[0], expected_masked, atol=1e-4
    )


# --- the two paths and torch's function ---


def brute_force_attention(q, k, v, allowed):
    """Loop over every query: softmax over its allowed keys only; zeros when none."""
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for index in torch.cartesian_prod(*[torch.arange(n) for n in q.shape[:-1]]).reshape(-1, q.dim() - 1):
        *batch, t = index.tolist()
        keep = allowed[(*batch, t)]
        if keep.any():
            scores = k[tuple(batch)][keep] @ q[(*batch, t)] / q.shape[-1] ** 0.5
            out[(*batch, t)] = scores.softmax(0) @ v[tuple(batch)][keep]
    return out


@pytest.mark.parametrize("num_keys", [5, 80])  # below and above the fused-path threshold
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "causal", "bool+causal"])
def test_paths_agree_with_torch_and_each_other(num_keys, mask_kind):
    torch.manual_seed(0)
    B, H, T, D = 2, 3, 6, 8
    q = torch.randn(B, H, T, D, dtype=torch.float64, requires_grad=True)
    k = torch.randn(B, H, num_keys, D, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, H, num_keys, 5, dtype=torch.float64, requires_grad=True)
    mask = None
    causal = "causal" in mask_kind
    if mask_kind.startswith("bool"):
        mask = torch.rand(B, 1, T, num_keys) > 0.3
        mask[..., 0] = True  # every row keeps something, as torch's reference requires
    elif mask_kind == "float":
        mask = torch.randn(T, num_keys, dtype=torch.float64)
    ours = scaled_dot_product_attention(q, k, v, mask, causal=causal)
    if causal and mask is not None:
        theirs = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask & torch.ones(T, num_keys, dtype=torch.bool).tril()
        )
    else:
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    full = attention_module._scores_mask(mask, causal, T, num_keys, q.device)
    reference, _ = _reference_attention(q, k, v, full, 0.0, D**-0.5)
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(ours, reference, atol=1e-10, rtol=1e-9)
    with torch.no_grad():  # inference picks its path by size: same values
        torch.testing.assert_close(
            scaled_dot_product_attention(q, k, v, mask, causal=causal), theirs, atol=1e-10, rtol=1e-9
        )
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    reference_grads = torch.autograd.grad(reference.square().sum(), (q, k, v))
    for ours_grad, reference_grad in zip(grads, reference_grads):
        torch.testing.assert_close(ours_grad, reference_grad, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("num_keys", [4, 80])
@pytest.mark.parametrize("float_mask", [False, True])
def test_fully_masked_row_gives_zeros_and_finite_gradients(num_keys, float_mask):
    torch.manual_seed(1)
    q = torch.randn(2, 3, 4, requires_grad=True)
    k = torch.randn(2, num_keys, 4, requires_grad=True)
    v = torch.randn(2, num_keys, 4, requires_grad=True)
    allowed = torch.rand(3, num_keys) > 0.5
    allowed[0] = True
    allowed[1] = False  # query 1 may attend nothing
    mask = allowed if not float_mask else torch.zeros(3, num_keys).masked_fill(~allowed, float("-inf"))
    out = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all()
    assert (out[:, 1] == 0).all()
    torch.testing.assert_close(
        out, brute_force_attention(q.detach(), k.detach(), v.detach(), allowed.expand(2, 3, num_keys))
    )
    out.sum().backward()
    for tensor in (q, k, v):
        assert torch.isfinite(tensor.grad).all()
    assert (q.grad[:, 1] == 0).all()


def test_dropout_is_applied_only_when_asked():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, 10, 8).unbind(0)
    base = scaled_dot_product_attention(q, k, v)
    assert torch.equal(base, scaled_dot_product_attention(q, k, v, dropout_p=0.0))
    assert not torch.allclose(base, scaled_dot_product_attention(q, k, v, dropout_p=0.5))


# --- properties (hypothesis) ---

shapes = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 8))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_properties(shape, seed):
    B, T, S, D = shape
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, D, generator=generator, dtype=torch.float64)
    k = torch.randn(B, S, D, generator=generator, dtype=torch.float64)
    v = torch.randn(B, S, D, generator=generator, dtype=torch.float64)
    out = scaled_dot_product_attention(q, k, v)
    # Rows of the weights sum to 1.
    torch.testing.assert_close(attention_weights(q, k).sum(-1), torch.ones(B, T, dtype=torch.float64))
    # Permuting the queries permutes the outputs.
    perm_q = torch.randperm(T, generator=generator)
    torch.testing.assert_close(scaled_dot_product_attention(q[:, perm_q], k, v), out[:, perm_q])
    # Permuting (key, value) pairs together changes nothing.
    perm_kv = torch.randperm(S, generator=generator)
    torch.testing.assert_close(scaled_dot_product_attention(q, k[:, perm_kv], v[:, perm_kv]), out)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(2, 12), st.integers(1, 8)),
    t=st.integers(0, 11),
    seed=st.integers(0, 999),
)
def test_causal_output_ignores_the_future(shape, t, seed):
    B, T, D = shape
    t = t % T
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=generator, dtype=torch.float64)
    changed = x.clone()
    changed[:, t + 1 :] = torch.randn(B, T - t - 1, D, generator=generator, dtype=torch.float64)
    before = scaled_dot_product_attention(x, x, x, causal=True)[:, : t + 1]
    after = scaled_dot_product_attention(changed, changed, changed, causal=True)[:, : t + 1]
    torch.testing.assert_close(before, after)


# --- MultiHeadAttention vs torch.nn.MultiheadAttention ---


def torch_masks(mask, key_mask):
    """Ours (True = may attend / real) -> torch's (True = blocked / padding)."""
    attn_mask = None if mask is None else (~mask if mask.dtype == torch.bool else mask)
    return attn_mask, None if key_mask is None else ~key_mask


@pytest.mark.parametrize(("cross", "kv_dims"), [(False, (None, None)), (True, (None, None)), (True, (6, 10))])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "key", "bool+key", "causal"])
@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_multi_head_attention_matches_torch(cross, kv_dims, masks, heads, bias):
    kdim, vdim = kv_dims
    torch.manual_seed(heads + 3 * cross)
    B, T, S, D = 3, 5, 7 if cross else 5, 16
    ours = MultiHeadAttention(D, heads, bias=bias, kdim=kdim, vdim=vdim).double()
    theirs = torch.nn.MultiheadAttention(D, heads, bias=bias, kdim=kdim, vdim=vdim, batch_first=True).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    query = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    key = torch.randn(B, S, kdim or D, dtype=torch.float64, requires_grad=True) if cross else query
    value = torch.randn(B, S, vdim or D, dtype=torch.float64, requires_grad=True) if cross else query
    mask = key_mask = None
    causal = masks == "causal"
    if "bool" in masks:
        mask = torch.rand(T, S) > 0.4
        mask[:, 0] = True
    if masks == "float":
        mask = torch.randn(T, S, dtype=torch.float64)
    if "key" in masks:
        key_mask = torch.rand(B, S) > 0.3
        key_mask[:, 1] = True
        if mask is not None:
            mask[:, 1] = True
    if causal:
        attn_mask, key_padding_mask = ~torch.ones(T, S, dtype=torch.bool).tril(), None
    else:
        attn_mask, key_padding_mask = torch_masks(mask, key_mask)
    out = ours(query, key, value, mask=mask, key_mask=key_mask, causal=causal)
    expected, _ = theirs(query, key, value, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-9, rtol=1e-9)
    params = list(ours.parameters())
    inputs = [query] + ([key, value] if cross else [])
    grads = torch.autograd.grad(out.square().sum(), params + inputs)
    expected_grads = torch.autograd.grad(expected.square().sum(), list(theirs.parameters()) + inputs)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-9, rtol=1e-9)


def test_weights_load_both_ways():
    theirs = torch.nn.MultiheadAttention(12, 3, batch_first=True)
    ours = MultiHeadAttention(12, 3)
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(MultiHeadAttention(12, 3).state_dict())
    for name, tensor in theirs.state_dict().items():
        assert ours.state_dict()[name].shape == tensor.shape


@pytest.mark.parametrize("bias", [False, True])
def test_teaching_form_equals_multi_head_attention(bias):
    torch.manual_seed(0)
    mha = MultiHeadAttention(24, 4, bias=bias).double()
    teaching = ConcatHeadsAttention.from_multi_head(mha)
    assert len(teaching.heads) == 4
    x = torch.randn(2, 9, 24, dtype=torch.float64)
    torch.testing.assert_close(teaching(x, causal=True), mha(x, causal=True), atol=1e-12, rtol=1e-12)


def test_kv_cache_matches_full_causal_attention():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    full = mha(x, causal=True)
    cache = KVCache()
    parts = [mha(x[:, :4], causal=True, cache=cache)]
    parts += [mha(x[:, t : t + 1], causal=True, cache=cache) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(parts, 1), full)
    assert len(cache) == 9


# --- record_attention ---


@pytest.mark.parametrize("tokens", [5, 70])
def test_record_attention_returns_weights_and_keeps_outputs(tokens):
    torch.manual_seed(0)
    layer = EncoderLayer(32, 4, 64, norm_first=True).eval()
    x = torch.randn(2, tokens, 32)
    plain = layer(x, causal=True)
    with record_attention(layer) as maps:
        recorded = layer(x, causal=True)
        layer(x)
    torch.testing.assert_close(recorded, plain, atol=1e-6, rtol=1e-5)
    assert len(maps) == 2 and maps[0].shape == (2, 4, tokens, tokens)
    h = layer.norm1(x)
    q, k, _ = layer.self_attn._project(h, h, h)
    torch.testing.assert_close(maps[0], attention_weights(q, k, causal=True))
    assert torch.allclose(maps[1].sum(-1), torch.ones(2, 4, tokens))
    assert not layer.self_attn._recorders  # recording stops with the block
    layer(x)
    assert len(maps) == 2


def test_record_attention_refuses_a_model_without_attention():
    with pytest.raises(ValueError, match="no labformer MultiHeadAttention"), record_attention(torch.nn.Linear(2, 2)):
        pass


# --- bad input ---


def test_bad_input_names_the_values():
    with pytest.raises(ValueError, match=r"dim \(10\) must be divisible by num_heads \(3\)"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="num_heads must be a positive integer; got 0"):
        MultiHeadAttention(10, 0)
    with pytest.raises(ValueError, match=r"same last dimension.*\(2, 3, 4\).*\(2, 5, 6\)"):
        scaled_dot_product_attention(torch.randn(2, 3, 4), torch.randn(2, 5, 6), torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match=r"same number of tokens"):
        scaled_dot_product_attention(torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match=r"mask of shape \(4, 4\) does not fit.*\(2, 3, 5\)"):
        scaled_dot_product_attention(
            torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4), torch.ones(4, 4, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match=r"query must have shape \(batch, tokens, 8\); got \(2, 3, 5\)"):
        MultiHeadAttention(8, 2)(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"key_mask must have shape \(batch, keys\) = \(2, 3\); got \(2, 4\)"):
        MultiHeadAttention(8, 2)(torch.randn(2, 3, 8), key_mask=torch.ones(2, 4, dtype=torch.bool))


# --- edge cases: the same answer (or the same refusal) on both paths, with and without gradients ---


@pytest.fixture(params=["reference", "fused"])
def path(request, monkeypatch):
    """Forces the plain or the fused core for every call (the default picks by size and by gradients)."""
    fused = request.param == "fused"
    monkeypatch.setattr(attention_module, "_use_fused", lambda q, k, v, mask: fused)
    return request.param


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "causal", "bool+causal"])
def test_no_keys_gives_zeros_and_zero_gradients(path, grad, masks):
    torch.manual_seed(0)
    q = torch.randn(2, 3, 4, 8, requires_grad=grad)
    k, v = torch.randn(2, 3, 0, 8, requires_grad=grad), torch.randn(2, 3, 0, 5, requires_grad=grad)
    mask = {"bool": torch.ones(4, 0, dtype=torch.bool), "float": torch.zeros(2, 1, 4, 0)}.get(masks.split("+")[0])
    with torch.set_grad_enabled(grad):
        out = scaled_dot_product_attention(q, k, v, mask, causal="causal" in masks)
    assert out.shape == (2, 3, 4, 5) and (out == 0).all()
    assert attention_weights(q, k, mask, causal="causal" in masks).shape == (2, 3, 4, 0)
    if grad:
        (out * torch.randn_like(out)).sum().backward()
        assert (q.grad == 0).all() and k.grad.shape == k.shape and v.grad.shape == v.shape


@pytest.mark.parametrize("grad", [False, True])
def test_layers_with_no_keys(path, grad):
    """An empty sequence with causal=True, and cross-attention on an empty memory with its key mask."""
    torch.manual_seed(0)
    layer = EncoderLayer(16, 4, 32).eval()
    with torch.set_grad_enabled(grad):
        assert layer(torch.randn(2, 0, 16, requires_grad=grad), causal=True).shape == (2, 0, 16)
        mha = MultiHeadAttention(16, 4)
        query = torch.randn(2, 5, 16, requires_grad=grad)
        memory = torch.randn(2, 0, 16)
        out = mha(query, memory, memory, key_mask=torch.ones(2, 0, dtype=torch.bool))
    # Nothing to attend to: zeros through the output projection, i.e. its bias at every position.
    torch.testing.assert_close(out, mha.out_proj.bias.expand(2, 5, 16))
    # torch's own decoder layer fails on an empty memory; its sub-modules give the reference.
    theirs = torch.nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True).eval()
    decoder = DecoderLayer(16, 4, 32).eval()
    decoder.load_state_dict(theirs.state_dict())
    with torch.set_grad_enabled(grad):
        out = decoder(query, memory, memory_key_mask=torch.ones(2, 0, dtype=torch.bool))
        h = theirs.norm1(query + theirs.self_attn(query, query, query, need_weights=False)[0])
        h = theirs.norm2(h + theirs.multihead_attn.out_proj.bias)
        expected = theirs.norm3(h + theirs.linear2(theirs.activation(theirs.linear1(h))))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("shape", [(), (7,), (3, 4, 7), (1, 2, 3, 4, 7)])
def test_masks_of_another_rank_are_refused(path, grad, shape):
    """(T, S) or the scores' full rank only: lower or higher ranks would be read from the right."""
    q = torch.randn(2, 3, 4, 8, requires_grad=grad)
    k, v = torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    with torch.set_grad_enabled(grad), pytest.raises(ValueError, match=r"expected \(queries, keys\) = \(4, 7\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(shape, dtype=torch.bool))


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_integer_masks_are_refused(path, grad, dtype):
    q = torch.randn(2, 4, 8, requires_grad=grad)
    mask = torch.ones(4, 4, dtype=dtype)
    message = rf"mask must be boolean .* or floating .*; got dtype {dtype}"
    with torch.set_grad_enabled(grad):
        with pytest.raises(ValueError, match=message):
            scaled_dot_product_attention(q, q, q, mask)
        with pytest.raises(ValueError, match=message):
            attention_weights(q, q, mask)
        with pytest.raises(ValueError, match=message):
            MultiHeadAttention(8, 2)(q, mask=mask, key_mask=torch.ones(2, 4, dtype=torch.bool))
        with pytest.raises(ValueError, match=message):
            EncoderLayer(8, 2, 16)(q, mask=mask)


@pytest.mark.parametrize("grad", [False, True])
def test_mismatched_dtypes_are_refused(path, grad):
    q = torch.randn(2, 4, 8, requires_grad=grad)
    with torch.set_grad_enabled(grad), pytest.raises(ValueError, match="one floating dtype; got torch.float32, "):
        scaled_dot_product_attention(q, q.double(), q)
    with pytest.raises(ValueError, match="torch.int64"):
        scaled_dot_product_attention(*(torch.ones(2, 4, 8, dtype=torch.long),) * 3)


def test_float_mask_of_another_dtype_is_added_in_the_scores_dtype(path):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 8).unbind(0)
    mask = torch.randn(4, 4, dtype=torch.float64)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask.float())
    )


@pytest.mark.parametrize("grad", [False, True])
def test_a_3d_layer_mask_is_per_batch_item(path, grad):
    """(B, T, S) means one mask per batch item, also when B equals the number of heads; torch's
    nn.MultiheadAttention takes (B·H, T, S), so the same mask repeated per head is its reference."""
    torch.manual_seed(0)
    B, H, T, D = 4, 4, 5, 16
    ours = MultiHeadAttention(D, H).double()
    theirs = torch.nn.MultiheadAttention(D, H, batch_first=True).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=grad)
    mask = torch.rand(B, T, T) > 0.4
    mask[..., 0] = True
    with torch.set_grad_enabled(grad):
        out = ours(x, mask=mask)
        expected, _ = theirs(x, x, x, attn_mask=~mask.repeat_interleave(H, 0), need_weights=False)
        torch.testing.assert_close(out, expected)
        for b in range(B):  # and item by item, with a (T, S) mask
            torch.testing.assert_close(out[b], ours(x[b : b + 1], mask=mask[b])[0])
        torch.testing.assert_close(ours(x, mask=mask[:1]), ours(x, mask=mask[0]))  # (1, T, S) broadcasts
        with pytest.raises(ValueError, match=r"\(batch, queries, keys\).*batch = 4 or 1; got \(16, 5, 5\).*per batch"):
            ours(x, mask=mask.repeat_interleave(H, 0))  # torch's (B·H, T, S) layout
        with pytest.raises(ValueError, match=r"got \(5,\)"):
            ours(x, mask=mask[0, 0])


def test_recording_takes_a_float_mask_of_another_dtype_like_the_plain_call():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x, mask = torch.randn(2, 5, 16), torch.randn(5, 5, dtype=torch.float64)
    with torch.no_grad():
        plain = mha(x, mask=mask)
        with record_attention(mha) as maps:
            recorded = mha(x, mask=mask)
    torch.testing.assert_close(recorded, plain)
    assert maps[0].dtype == torch.float32 and maps[0].shape == (2, 4, 5, 5)


def test_split_heads_backward_equals_the_plain_views():
    """The fused projections' split writes the three gradients back with one copy; the same numbers as
    autograd through view/permute/unbind, with an unused part getting zeros."""
    from labformer.attention.multi_head import _split_heads

    qkv = torch.randn(2, 5, 3 * 8, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: _split_heads(t, 2), (qkv,))
    weights = [torch.randn(2, 2, 5, 4, dtype=torch.float64) for _ in range(3)]
    for used in ((0, 1, 2), (0, 2)):
        ours = torch.autograd.grad(sum((_split_heads(qkv, 2)[i] * weights[i]).sum() for i in used), qkv)[0]
        plain = qkv.view(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
        expected = torch.autograd.grad(sum((plain[i] * weights[i]).sum() for i in used), qkv)[0]
        assert torch.equal(ours, expected)
        assert ours.is_contiguous()


def test_heads_that_do_not_divide_dim_as_the_lab_writes_them():
    """The lab's MultiHeadAttention(num_heads, dim_embed, head_size): 4 heads of 7 on D = 30 concatenate
    to 28 and project back to 30; the batched module equals the lab's per-head form, in every path."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(30, 4, head_dim=7).double()
    assert mha.in_proj_weight.shape == (84, 30) and mha.out_proj.weight.shape == (30, 28)
    teaching = ConcatHeadsAttention.from_multi_head(mha)
    assert [tuple(head.query.weight.shape) for head in teaching.heads] == [(7, 30)] * 4
    x = torch.randn(2, 9, 30, dtype=torch.float64)
    torch.testing.assert_close(mha(x, causal=True), teaching(x, causal=True), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(mha(x), teaching(x), atol=1e-12, rtol=1e-12)
    mha.eval()
    with torch.no_grad():
        torch.testing.assert_close(mha.fast(x), teaching(x), atol=1e-12, rtol=1e-12)
        memory = torch.randn(2, 5, 30, dtype=torch.float64)
        torch.testing.assert_close(mha.attend_memory(x, mha.memory_keys_values(memory)), mha(x, memory))
    cache = KVCache()
    steps = [mha(x[:, t : t + 1], causal=True, cache=cache) for t in range(9)]
    torch.testing.assert_close(torch.cat(steps, 1), mha(x, causal=True))
    with pytest.raises(ValueError, match="head_dim must be a positive integer"):
        MultiHeadAttention(30, 4, head_dim=0)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(30, 4)
