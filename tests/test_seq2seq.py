"""The encoder–decoder: its core against torch.nn.Transformer in float64 (outputs and gradients, with source
padding and the causal mask), decoding (cached = uncached, beam 1 = greedy, beam search = brute force),
the generated tasks (held out by construction) and the pairs file's errors."""

from __future__ import annotations

import datetime
import itertools
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from labformer import KVCache, MultiHeadAttention
from labformer.data.dates import FORMATS, TEST_FORMATS, TEST_YEARS, date_pairs
from labformer.data.pairs import BOS, EOS, PAD, UNK, Vocabulary, load_pairs, read_tsv
from labformer.models.seq2seq import Seq2Seq, Seq2SeqConfig
from labformer.training.translation import character_accuracy, score_split
from labformer.transformer import Transformer


def torch_twin(norm_first: bool, activation: str = "relu") -> tuple[Transformer, nn.Transformer]:
    ours = Transformer(16, 4, 2, 3, 32, norm_first=norm_first, activation=activation).double()
    theirs = nn.Transformer(
        16, 4, 2, 3, 32, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).double()  # (its "enable_nested_tensor" warning with norm_first is torch's own fast path, unused here)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_the_core_is_torch_transformer_outputs_and_gradients(norm_first, activation):
    torch.manual_seed(0)
    ours, theirs = torch_twin(norm_first, activation)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    source = torch.randn(3, 7, 16, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True)
    real = torch.ones(3, 7, dtype=torch.bool)
    real[1, 4:] = False  # padding at the end of two sources
    real[2, 2:] = False
    out = ours(source, target, real)
    expected = theirs(
        source, target, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64),
        src_key_padding_mask=~real, memory_key_padding_mask=~real, tgt_is_causal=True,
    )  # fmt: skip
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [source, target, *ours.parameters()])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [source, target, *theirs.parameters()])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


def test_weights_move_both_ways():
    torch.manual_seed(1)
    theirs = nn.Transformer(16, 4, 1, 1, 32, dropout=0.0, batch_first=True)
    ours = Transformer(16, 4, 1, 1, 32)
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())


def small_model(seed: int = 0, **changes) -> Seq2Seq:
    torch.manual_seed(seed)
    values = dict(source_vocab=12, target_vocab=9, max_source=10, max_target=6, dim=32, num_heads=4, mlp_dim=64)
    return Seq2Seq(Seq2SeqConfig(**{**values, **changes})).eval()


def sources(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(4, 12, (6, 9), generator=generator)
    source[1, 5:] = PAD  # sources of different lengths in one batch
    source[3, 2:] = PAD
    source[4, 7:] = PAD
    return source


def test_memory_keys_values_are_the_cross_attention_of_forward():
    torch.manual_seed(0)
    attention = MultiHeadAttention(16, 4)
    query, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    real = torch.tensor([[True] * 5, [True, True, True, False, False]])
    expected = attention(query, memory, memory, key_mask=real)
    torch.testing.assert_close(
        attention.attend_memory(query, attention.memory_keys_values(memory), key_mask=real), expected
    )


@pytest.mark.parametrize("norm_first", [True, False])
def test_a_cached_step_is_the_whole_decoder_at_that_position(norm_first):
    model = small_model(norm_first=norm_first)
    source, target = sources()[:2], torch.randint(4, 9, (2, 5))
    memory, real = model.encode(source)
    whole = model.transformer.decode(model._embed_target(target), memory, real)
    layers = model.transformer.decoder.layers
    caches = [KVCache(6) for _ in layers]
    kv = [layer.multihead_attn.memory_keys_values(memory) for layer in layers]
    for t in range(5):
        x = model._embed_target(target[:, t : t + 1], t)
        for layer, cache, keys_values in zip(layers, caches, kv):
            x = layer.step(x, keys_values, cache, real)
        torch.testing.assert_close(model.transformer.decoder._final_norm(x)[:, 0], whole[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cached_decoding_writes_what_uncached_decoding_writes(beam, seed):
    model = small_model(seed)
    cached = model.translate(sources(seed), beam=beam)
    uncached = model.translate(sources(seed), beam=beam, use_cache=False)
    assert cached.tokens == uncached.tokens
    assert cached.scores == pytest.approx(uncached.scores, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_beam_one_is_greedy(seed):
    model = small_model(seed)
    assert model.translate(sources(seed), beam=1).tokens == model._beam(sources(seed), 1, 6, True).tokens


def brute_force(model: Seq2Seq, source: torch.Tensor, limit: int) -> tuple[float, list[int]]:
    """Every sequence of written characters (ids 4…) ending with the end token within ``limit`` tokens, or
    cut at the limit, scored by its mean log-probability per token: the best."""
    best: tuple[float, list[int]] = (-math.inf, [])
    letters = range(4, model.config.target_vocab)
    for length in range(limit + 1):
        for body in itertools.product(letters, repeat=length):
            ended = length < limit
            tokens = [*body, EOS] if ended else list(body)
            if not tokens:
                continue
            logits = model(source[None], torch.tensor([[BOS, *tokens[:-1]]])).float()[0]
            logits[:, [PAD, BOS, UNK]] = -math.inf
            logp = logits.log_softmax(-1).gather(1, torch.tensor(tokens)[:, None]).sum().item()
            best = max(best, (logp / len(tokens), list(body)))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_wide_beam_finds_the_brute_force_best(seed):
    """Target vocabulary of 2 characters, at most 3 tokens: 15 sequences, all within a beam of 8."""
    model = small_model(seed, target_vocab=6, max_target=3)
    source = sources(seed)[:3]
    found = model.translate(source, beam=8)
    for row in range(3):
        score, tokens = brute_force(model, source[row][source[row] != PAD], 3)
        assert found.tokens[row] == tokens
        assert found.scores[row] == pytest.approx(score, abs=1e-5)


def test_padding_does_not_change_what_a_source_gets():
    model = small_model(4)
    batch = sources(4)
    alone = [model.translate(row[row != PAD][None]).tokens[0] for row in batch]
    assert model.translate(batch).tokens == alone


def test_the_attention_of_an_example_has_the_three_kinds():
    model = small_model(5, encoder_layers=2, decoder_layers=3)
    source = sources(5)[0]
    written = torch.tensor(model.translate(source[None]).tokens[0])
    attention = model.attention(source, written)
    T = min(len(written) + 1, 6)
    assert attention.encoder.shape == (2, 4, 9, 9)
    assert attention.decoder.shape == (3, 4, T, T)
    assert attention.cross.shape == (3, 4, T, 9)
    torch.testing.assert_close(attention.cross.sum(-1), torch.ones(3, 4, T))
    assert torch.all(attention.decoder.triu(1) == 0)  # causal: no weight on later positions
    # The probabilities are those of the model's own logits for the written tokens.
    following = [*written.tolist(), EOS][:T]
    logits = model(source[None], torch.tensor([[BOS, *written.tolist()]])[:, :T])[0]
    torch.testing.assert_close(attention.probabilities, logits.softmax(-1)[range(T), following])


def test_dates_are_written_as_iso_of_the_same_day():
    months = {**{m.lower(): i for i, m in enumerate(
        ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
         "november", "december"], 1)}}  # fmt: skip
    for source, target, group in date_pairs("train", 400, 3) + date_pairs("test", 400, 3):
        date = datetime.date.fromisoformat(target)
        assert str(date.year) in source, (source, target)
        named = [i for name, i in months.items() if name in source.lower()]
        if named:
            assert date.month in named, (source, target)
        if group.startswith("numeric"):
            numbers = [int(n) for n in re.findall(r"\d+", source)]
            assert set(numbers) == {date.day, date.month, date.year}
            if group.endswith("d/m/y") or group.endswith("d m y"):
                assert numbers == [date.day, date.month, date.year]
            if group.startswith("numeric: m/d/y"):
                assert numbers == [date.month, date.day, date.year] and date.day > 12


def test_the_test_split_is_held_out_by_construction():
    train, val, test = (date_pairs(split, 3000, 0) for split in ("train", "val", "test"))
    formats = {f.name for f in FORMATS}
    for _, target, group in train + val:
        assert int(target[:4]) not in TEST_YEARS and group.split(": ", 1)[1] not in TEST_FORMATS
    held = [(t, g) for _, t, g in test]
    assert all(int(t[:4]) in TEST_YEARS or g.split(": ", 1)[1] in TEST_FORMATS for t, g in held)
    assert {g.split(": ", 1)[1] for _, g in held} >= TEST_FORMATS and formats > TEST_FORMATS
    assert not {s for s, _, _ in train} & {s for s, _, _ in test}
    # Every decade, and every digit in every position of the year, occurs in training.
    years = {t[:4] for _, t, _ in train}
    assert all({y[i] for y in years} >= set("0123456789") for i in (2, 3))
    assert {y[:3] for y in years} == {str(decade) for decade in range(100, 300)}  # the years 1000-2999
    assert {t[:4] for _, t, _ in test} >= {str(y) for y in TEST_YEARS[:5]}


def test_generated_splits_are_the_same_for_a_seed_and_differ_between_seeds():
    assert date_pairs("train", 50, 7) == date_pairs("train", 50, 7)
    assert date_pairs("train", 50, 7) != date_pairs("train", 50, 8)
    data = load_pairs("reverse", train_size=500, val_size=50, test_size=50, seed=0)
    assert all(target == source[::-1] for source, target, _ in data.splits["test"])
    assert not {s for s, _, _ in data.splits["train"]} & {s for s, _, _ in data.splits["test"]}


@given(st.text(alphabet="abc xyz", min_size=0, max_size=12))
@settings(max_examples=50, deadline=None)
def test_vocabulary_round_trip(text):
    vocab = Vocabulary.from_texts(["abc xyz"])
    assert vocab.decode([*vocab.encode(text).tolist(), EOS, 5]) == text


def test_scores_count_exact_matches_and_characters():
    triples = [("a", "2021-03-04", "en: x"), ("b", "2021-03-05", "fr: y"), ("c", "1999-12-31", "fr: y")]
    scores = score_split(triples, ["2021-03-04", "2021-03-15", "1999-12-3"])
    assert scores.exact == pytest.approx(1 / 3)
    assert character_accuracy("2021-03-15", "2021-03-05") == pytest.approx(0.9)
    assert scores.characters == pytest.approx((1 + 0.9 + 0.9) / 3)
    assert scores.by_language["fr"] == {"exact": 0.0, "characters": pytest.approx(0.9), "count": 2}
    assert [m[2] for m in scores.mistakes] == ["2021-03-15", "1999-12-3"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"un\tone\n\xff\xfe\tbad\n", "line 2: not UTF-8 text"),
        (b"un\tone\ndeux two\n", "line 2: no tab"),
        (b"un\tone\n\n\ttwo\n", "line 3: the source is empty"),
        (b"un\t \n", "line 1: the target is empty"),
        (b"un\tone\n" + b"x" * 50 + b"\ty\n", "line 2: the source has 50 characters; the model takes at most 40"),
    ],
)
def test_a_bad_pairs_file_is_one_error_naming_the_line(tmp_path, content, message):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_tsv(path, max_source=40)


def test_a_pairs_file_is_split_and_its_vocabularies_built_from_training(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{w}\t{w.upper()}\n" for w in ["chat", "chien", "loup", "ours", "renard"] * 8))
    data = load_pairs("pairs", train_size=1, val_size=100, test_size=100, seed=0, data_file=str(path))
    assert len(data.splits["test"]) == len(data.splits["val"]) == 4 and len(data.splits["train"]) == 32
    assert set(data.target_vocab.chars) <= set("CHATIENLOUPRSD")
