"""The character GPT, its tokenizer and text data, and KV-cached generation."""

import math

import pytest
import torch

from labformer.data.text import CharTokenizer, load_text
from labformer.models.gpt import GPT, GPTConfig

TINY = dict(vocab_size=11, block_size=8, dim=16, depth=2, num_heads=4, mlp_dim=32)


def model(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**TINY, **overrides})).double().eval()


def test_shapes_tying_and_initial_loss():
    gpt = model()
    idx = torch.randint(0, 11, (3, 8))
    assert gpt(idx).shape == (3, 8, 11)
    assert gpt.head.weight is gpt.token_embedding.weight
    assert list(gpt.state_dict()).count("head.weight") == 1
    # N(0, 0.02) init: nearly uniform predictions, loss ≈ ln(vocab) on unrelated targets
    targets = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(1))
    assert abs(gpt.loss(idx, targets).item() - math.log(11)) < 0.1
    untied = model(tie_weights=False)
    assert untied.head.weight is not untied.token_embedding.weight


def test_options_beyond_the_lab_compute_their_formulas():
    """ReLU², zero-initialised output projections (each layer starts as the identity) and QK-norm against
    attention written out with RMS-normalised queries and keys."""
    import torch.nn.functional as F

    from labformer.attention import MultiHeadAttention

    gpt = model(activation="relu2", zero_init=True)
    idx = torch.randint(0, 11, (2, 8))
    x = gpt.position(gpt.token_embedding(idx))
    torch.testing.assert_close(gpt(idx), gpt.head(gpt.encoder.norm(x)))  # every residual branch is 0
    hidden = torch.randn(5, 16, dtype=torch.float64)
    torch.testing.assert_close(gpt.encoder.layers[0].activation(hidden), F.relu(hidden) ** 2)
    torch.manual_seed(1)
    attention = MultiHeadAttention(16, 4, qk_norm=True).double()
    torch.nn.init.normal_(attention.q_norm.weight)
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    q, k, v = (x @ w.T + b for w, b in zip(attention.in_proj_weight.chunk(3), attention.in_proj_bias.chunk(3)))
    heads = [t.view(2, 6, 4, 4).transpose(1, 2) for t in (q, k, v)]

    def rms(t, gain):
        return t / (t.pow(2).mean(-1, keepdim=True) + torch.finfo(t.dtype).eps).sqrt() * gain

    scores = rms(heads[0], attention.q_norm.weight) @ rms(heads[1], attention.k_norm.weight).transpose(-1, -2) / 2
    scores = scores.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf"))
    out = (scores.softmax(-1) @ heads[2]).transpose(1, 2).reshape(2, 6, 16)
    torch.testing.assert_close(attention(x, causal=True), attention.out_proj(out))
    with pytest.raises(ValueError, match="rope needs an even head dimension; dim 12 / 4 heads is odd"):
        GPTConfig(**{**TINY, "dim": 12, "position": "rope"})


def test_causality():
    gpt = model()
    idx = torch.randint(0, 11, (2, 8))
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    torch.testing.assert_close(gpt(idx)[:, :5], gpt(changed)[:, :5])
    assert not torch.allclose(gpt(idx)[:, 5:], gpt(changed)[:, 5:])


@pytest.mark.parametrize("position", ["learned", "sincos", "rope"])
def test_cached_logits_equal_full_forward(position):
    from labformer.attention import KVCache

    gpt = model(position=position)
    idx = torch.randint(0, 11, (2, 8))
    full = gpt(idx)
    caches = [KVCache() for _ in gpt.encoder.layers]
    steps = [gpt(idx[:, :3], caches)] + [gpt(idx[:, t : t + 1], caches) for t in range(3, 8)]
    torch.testing.assert_close(torch.cat(steps, 1), full)


@pytest.mark.parametrize("capacity", [None, 8])
@pytest.mark.parametrize(("norm_first", "activation"), [(True, "gelu"), (False, "relu")])
def test_the_decode_fast_path_equals_the_layers_forward(capacity, norm_first, activation):
    """Encoder.fast (generation's fast path) against forward with a cache (the reference)."""
    from labformer.attention import KVCache
    from labformer.encoder import Encoder

    torch.manual_seed(0)
    encoder = Encoder(16, 4, 32, 3, norm_first=norm_first, activation=activation, final_norm=norm_first)
    encoder = encoder.double().eval()
    x = torch.randn(2, 8, 16, dtype=torch.double)
    reference = [KVCache(capacity) for _ in encoder.layers]
    fast = [KVCache(capacity) for _ in encoder.layers]
    expected = [encoder(x[:, :3], causal=True, caches=reference)]
    got = [encoder(x[:, :3], causal=True, caches=fast)]
    for t in range(3, 8):
        expected.append(encoder(x[:, t : t + 1], causal=True, caches=reference))
        got.append(encoder.fast(x[:, t : t + 1], fast))
    torch.testing.assert_close(torch.cat(got, 1), torch.cat(expected, 1))
    torch.testing.assert_close(torch.cat(got, 1), encoder(x, causal=True))  # and the whole sequence at once
    for a, b in zip(reference, fast):
        torch.testing.assert_close(a.k, b.k)


def test_a_preallocated_cache_is_written_in_place_and_refuses_overflow():
    from labformer.attention import KVCache

    cache = KVCache(4)
    k = torch.randn(1, 2, 3, 5)
    all_k, _ = cache.extend(k, k)
    buffer = cache._k
    all_k, _ = cache.extend(k[:, :, :1], k[:, :, :1])
    assert cache._k is buffer and len(cache) == 4  # no new allocation
    torch.testing.assert_close(all_k, torch.cat([k, k[:, :, :1]], 2))
    with pytest.raises(ValueError, match="holds 4 positions"):
        cache.extend(k[:, :, :1], k[:, :, :1])


def test_a_sliding_cache_overwrites_the_oldest_position_and_refuses_masks_once_wrapped():
    from labformer.attention import KVCache

    cache = KVCache(4, sliding=True)
    keys = torch.arange(7.0).view(1, 1, 7, 1)  # key t holds the value t
    cache.extend(keys[:, :, :3], keys[:, :, :3])
    buffer = cache._k
    for t in range(3, 7):
        k, v = cache.extend(keys[:, :, t : t + 1], keys[:, :, t : t + 1])
        assert len(cache) == min(t + 1, 4) and cache.seen == t + 1
    assert cache._k is buffer  # written in place, never reallocated
    assert sorted(k.flatten().tolist()) == [3.0, 4.0, 5.0, 6.0]  # the latest four, in ring order
    with pytest.raises(ValueError, match="one new token at a time"):
        cache.causal_mask(1, torch.device("cpu"))
    with pytest.raises(ValueError, match="needs a capacity"):
        KVCache(sliding=True)


def test_rope_generation_slides_the_window_by_one_token_without_rebuilding_the_cache(monkeypatch):
    """With rotary positions the cache is filled once, then takes one token per step, the oldest key
    overwritten: sliding-window attention in every layer. Brute force: each token sampled from the model
    run from scratch on the whole text so far, each token attending only the latest 8 in every layer."""
    gpt = model(position="rope")
    for parameter in gpt.parameters():  # a random model with sharp predictions: varied text
        torch.nn.init.normal_(parameter, std=0.3, generator=torch.Generator().manual_seed(parameter.numel()))
    prompt = torch.tensor([[1, 2, 3]])
    widths: list[int] = []
    forward = GPT.forward

    def counting(self, idx, *args, **kwargs):
        widths.append(idx.shape[1])
        return forward(self, idx, *args, **kwargs)

    monkeypatch.setattr(GPT, "forward", counting)
    out = gpt.generate(prompt, 30, temperature=0.8, generator=torch.Generator().manual_seed(0))
    assert widths == [3]  # the prompt once; the other 29 tokens went through the fast path
    monkeypatch.setattr(GPT, "forward", forward)
    generator, idx = torch.Generator().manual_seed(0), prompt
    distance = torch.arange(33)[:, None] - torch.arange(33)[None, :]
    for _ in range(30):
        n = idx.shape[1]
        embedded = gpt.token_embedding(idx)
        rope = gpt.rotary(n).to(torch.complex128)
        band = (distance[:n, :n] >= 0) & (distance[:n, :n] < 8)
        logits = gpt.head(gpt.encoder(embedded, mask=band, rope=rope))[:, -1]
        probabilities = (logits.float() / 0.8).softmax(-1)
        idx = torch.cat([idx, torch.multinomial(probabilities, 1, generator=generator)], 1)
    assert torch.equal(out, idx)
    assert len(set(out[0].tolist())) > 3
    uncached = gpt.generate(prompt, 30, temperature=0.8, use_cache=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, uncached)


def test_generation_records_attention_through_the_reference_path():
    from labformer.attention import record_attention

    gpt = model()
    with record_attention(gpt) as maps:
        gpt.generate(torch.tensor([[1, 2]]), 3, generator=torch.Generator().manual_seed(0))
    assert len(maps) == 2 * 3  # the prompt, then one call per new token after the first, in every layer


@pytest.mark.parametrize("top_k", [None, 3])
def test_generation_with_cache_equals_without(top_k):
    gpt = model()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    # 30 new tokens with block 8: the window jumps several times
    with_cache = gpt.generate(prompt, 30, temperature=0.9, top_k=top_k, generator=torch.Generator().manual_seed(4))
    without = gpt.generate(
        prompt, 30, temperature=0.9, top_k=top_k, use_cache=False, generator=torch.Generator().manual_seed(4)
    )
    assert with_cache.shape == (2, 33)
    assert torch.equal(with_cache, without)
    assert torch.equal(with_cache[:, :3], prompt)


def test_generation_window_matches_a_brute_force_loop():
    """Each token is sampled from the model run on the documented window, recomputed from scratch."""
    gpt = model()
    prompt = torch.tensor([[1, 2]])
    out = gpt.generate(prompt, 20, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    idx, start = prompt, 0
    for _ in range(20):
        if idx.shape[1] - start > 8:
            start = idx.shape[1] - 4
        probabilities = gpt(idx[:, start:])[:, -1].float().softmax(-1)
        idx = torch.cat([idx, torch.multinomial(probabilities, 1, generator=generator)], 1)
    assert torch.equal(out, idx)


@pytest.mark.parametrize("position", ["learned", "sincos", "rope"])
def test_batched_generation_of_prompts_of_different_lengths_equals_one_at_a_time(position):
    """Left-padded, key-masked, positions per row: each row greedily continues as it would alone, through
    several window jumps (block 8), for prompts shorter than, equal to and longer than the block."""
    gpt = model(position=position)
    lengths = (1, 3, 8, 11)
    prompts = [torch.randint(0, 11, (n,), generator=torch.Generator().manual_seed(n)) for n in lengths]
    for use_cache in (True, False):
        batched = gpt.generate_batch(prompts, 25, top_k=1, use_cache=use_cache)
        for prompt, row in zip(prompts, batched):
            assert torch.equal(row, gpt.generate(prompt[None], 25, top_k=1)[0])


def test_batched_generation_with_cache_equals_without_when_sampling():
    gpt = model()
    prompts = [torch.tensor([1]), torch.tensor([2, 3, 4, 5, 6]), torch.tensor([7, 8, 9])]
    runs = [
        gpt.generate_batch(prompts, 20, 0.9, 5, use_cache=use_cache, generator=torch.Generator().manual_seed(2))
        for use_cache in (True, False)
    ]
    assert [len(row) for row in runs[0]] == [21, 25, 23]
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert all(torch.equal(row[: len(p)], p) for row, p in zip(runs[0], prompts))


def test_padding_is_never_attended():
    """Whatever the padding holds, a left-padded row's logits equal the unpadded row's."""
    gpt = model()
    row = torch.tensor([[4, 2, 7]])
    for pad in (0, 5):
        padded = torch.cat([torch.full((1, 4), pad), row], dim=1)
        mask = torch.tensor([[False] * 4 + [True] * 3])
        positions = torch.tensor([[0, 0, 0, 0, 0, 1, 2]])
        logits = gpt(padded, key_mask=mask, positions=positions)[:, 4:]
        torch.testing.assert_close(logits, gpt(row))


def test_bad_batched_generation_arguments():
    gpt = model()
    with pytest.raises(ValueError, match=r"non-empty 1-D id tensors; got shapes \[\(2,\), \(0,\)\]"):
        gpt.generate_batch([torch.tensor([1, 2]), torch.tensor([], dtype=torch.long)], 3)
    with pytest.raises(ValueError, match="top_k must be positive; got 0"):
        gpt.generate_batch([torch.tensor([1])], 3, top_k=0)
    with pytest.raises(ValueError, match=r"positions must lie in 0..7; got 0..8"):
        gpt(torch.zeros(1, 2, dtype=torch.long), positions=torch.tensor([[0, 8]]))


def test_top_k_restricts_tokens():
    gpt = model()
    prompt = torch.tensor([[1]])
    logits = gpt(prompt)[:, -1]
    allowed = set(logits.topk(1).indices[0].tolist())
    out = gpt.generate(prompt, 1, top_k=1, generator=torch.Generator().manual_seed(0))
    assert out[0, -1].item() in allowed


@pytest.mark.parametrize("top_k", [None, 3])
def test_sampling_draws_what_torch_multinomial_draws(top_k):
    """The sampler skips torch.multinomial's checks but must draw the same ids from the same generator."""
    from labformer.models.gpt import _sample

    torch.manual_seed(0)
    for seed in range(50):
        logits = torch.randn(4, 65) * 3
        scaled = logits / 0.7
        if top_k is not None:
            scaled = scaled.masked_fill(scaled < scaled.topk(top_k).values[:, -1:], float("-inf"))
        expected = torch.multinomial(scaled.softmax(-1), 1, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(_sample(logits, 0.7, top_k, torch.Generator().manual_seed(seed)), expected)


def test_the_fast_paths_gelu_equals_torchs_and_restores_onednn():
    """Small GELUs on the fast path run ATen's kernel instead of oneDNN's: the same function, flag restored."""
    import torch.nn.functional as F

    from labformer.encoder import _small_activation

    x = torch.randn(1, 1, 1536) * 4
    assert torch.backends.mkldnn.enabled
    with torch.no_grad():
        torch.testing.assert_close(_small_activation(F.gelu, x), F.gelu(x), rtol=0, atol=2e-6)
        big = torch.randn(64, 1536)
        assert torch.equal(_small_activation(F.gelu, big), F.gelu(big))  # large: torch's own choice
    assert torch.backends.mkldnn.enabled
    exact = 0.5 * x.double() * (1 + torch.erf(x.double() / math.sqrt(2)))
    torch.testing.assert_close(_small_activation(F.gelu, x).double(), exact, rtol=0, atol=2e-6)


def test_bad_generation_arguments():
    gpt = model()
    with pytest.raises(ValueError, match="temperature must be positive; got 0"):
        gpt.generate(torch.tensor([[1]]), 3, temperature=0)
    with pytest.raises(ValueError, match="exceed block_size 8"):
        gpt(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"num_heads \(3\) must divide dim \(16\)"):
        GPTConfig(**{**TINY, "num_heads": 3})


# --- tokenizer and text data ---


def test_tokenizer_round_trip_and_unknown_characters():
    tokenizer = CharTokenizer.from_text("hello world")
    assert tokenizer.chars == sorted(set("hello world"))
    assert tokenizer.decode(tokenizer.encode("low")) == "low"
    with pytest.raises(ValueError, match=r"characters \['X', 'z'\] are not in the model's vocabulary"):
        tokenizer.encode("zoX")


def test_shakespeare_split_and_batches(shakespeare):
    data = load_text(shakespeare, block_size=16)
    assert len(data.tokenizer) == 65
    assert len(data.train) + len(data.val) == 1_115_394
    assert len(data.train) == int(1_115_394 * 0.9)
    x, y = data.batch("val", 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    text = shakespeare.read_text()
    starts = [text.find(data.tokenizer.decode(row)) for row in x]
    assert all(s >= int(1_115_394 * 0.9) - 16 for s in starts)  # validation windows come from the last tenth


def test_bad_text_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_text(tmp_path / "missing.txt", block_size=8)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_text(empty, block_size=8)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café".encode("latin-1") * 100)
    with pytest.raises(ValueError, match="is not UTF-8"):
        load_text(latin, block_size=8)
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be")
    with pytest.raises(ValueError, match="too short for block_size 8"):
        load_text(short, block_size=8)


@pytest.mark.parametrize("length", [2, 9, 17, 40, 101])
def test_sequence_loss_scores_each_character_once_against_brute_force(length):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, dim=16, depth=2, num_heads=2, mlp_dim=32)).eval()
    ids = torch.randint(0, 11, (length,))
    total, count = model.sequence_loss(ids, batch_size=3)
    assert count == length - 1
    # brute force: character j is predicted from the window that scores it, one window at a time
    block, stride, expected, scored = 8, 4, 0.0, set()
    end = min(block, length - 1)
    previous = 0
    while True:
        start = max(0, end - block)
        with torch.no_grad():
            logits = model(ids[None, start:end])[0]
        for j in range(previous + 1, end + 1):  # the targets this window adds
            assert j - start >= min(j, block // 2)  # at least half a block of context (or all there is)
            expected += float(torch.nn.functional.cross_entropy(logits[j - start - 1][None], ids[j][None]))
            scored.add(j)
        if end == length - 1:
            break
        previous, end = end, min(end + stride, length - 1)
    assert scored == set(range(1, length))
    assert total == pytest.approx(expected, rel=1e-5)
    if length - 1 <= block:  # one window: the model's own mean loss
        assert total / count == pytest.approx(float(model.loss(ids[None, :-1], ids[None, 1:])), rel=1e-5)


def test_sequence_loss_needs_two_tokens():
    model = GPT(GPTConfig(vocab_size=5, block_size=4, dim=8, depth=1, num_heads=2, mlp_dim=16))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        model.sequence_loss(torch.tensor([1]))


def test_generated_tokens_are_ordinary_tensors_a_model_can_train_on():
    """Generation runs in inference mode inside; what it returns must still work with autograd."""
    gpt = model()
    out = gpt.generate(torch.tensor([[1, 2]]), 6, generator=torch.Generator().manual_seed(0))
    assert not out.is_inference()
    gpt.train()
    gpt.loss(out[:, :-1], out[:, 1:]).backward()
    assert gpt.token_embedding.weight.grad is not None
