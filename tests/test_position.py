"""Position encodings against their formulas, written out element by element, and the lab's value."""

import math

import pytest
import torch
import torch.nn.functional as F

from labformer import (
    LearnedPositionEmbedding,
    SinusoidalPositionEncoding,
    scaled_dot_product_attention,
    sinusoidal_encoding,
)


@pytest.mark.parametrize("variant", ["vaswani", "lab"])
def test_table_matches_formula(variant):
    n, d = 7, 10
    table = sinusoidal_encoding(n, d, variant=variant)
    for pos in range(n):
        for i in range(d):
            exponent = i if variant == "lab" else 2 * (i // 2)
            phase = pos / 10000 ** (exponent / d)
            expected = math.sin(phase) if i % 2 == 0 else math.cos(phase)
            assert abs(table[pos, i].item() - expected) < 1e-6


def test_lab_value_after_adding_the_lab_encoding():
    rows = lambda values: F.normalize(torch.tensor(values, dtype=torch.float32), dim=1)  # noqa: E731
    q = rows([[3, 3], [-1, 3.2], [0.2, -0.4], [0, -1]])
    k = rows([[2, 1.5], [-4, 3], [0, 3], [-1, -4]])
    v = rows([[-1, 2], [3, 4], [2, -3], [0, 2]])
    encoding = SinusoidalPositionEncoding(4, 2, variant="lab")
    out = scaled_dot_product_attention(encoding(q[None]), encoding(k[None]), v[None])[0]
    expected = torch.tensor([[0.2614, 0.0326], [0.2765, 0.0179], [0.1590, 0.2344], [0.1739, 0.4437]])
    assert torch.allclose(out, expected, atol=1e-4)
    # With positions, permuting the (k, v) pairs now changes the output.
    perm = torch.tensor([2, 0, 3, 1])
    permuted = scaled_dot_product_attention(encoding(q[None]), encoding(k[perm][None]), v[perm][None])[0]
    assert (permuted - out).abs().max() > 1e-2


def test_modules_add_the_right_rows_and_check_length():
    x = torch.zeros(2, 5, 8)
    sinusoidal = SinusoidalPositionEncoding(16, 8)
    torch.testing.assert_close(sinusoidal(x, offset=3)[0], sinusoidal_encoding(16, 8)[3:8])
    learned = LearnedPositionEmbedding(16, 8)
    torch.testing.assert_close(learned(x)[1], learned.table[:5])
    assert 0.01 < learned.table.std().item() < 0.03
    assert list(sinusoidal.state_dict()) == []
    with pytest.raises(ValueError, match=r"positions 14..18 exceed the encoding's 16 positions"):
        learned(x, offset=14)
    with pytest.raises(ValueError, match="variant must be 'vaswani' or 'lab'; got 'rope'"):
        sinusoidal_encoding(4, 4, variant="rope")


# --- rotary position embeddings (beyond the lab) ---


def test_rotary_rotates_each_pair_by_position_times_its_frequency():
    """Against the formula, written out with cos and sin: pair j of a head is (x[2j], x[2j+1]) and turns
    by p · 10000^(-2j/hd)."""
    from labformer.position import RotaryEmbedding, apply_rotary

    head_dim, length = 8, 5
    x = torch.randn(2, 3, length, head_dim, dtype=torch.float64)
    rotated = apply_rotary(x, RotaryEmbedding(head_dim).double()(length, offset=4))
    for p in range(length):
        for j in range(head_dim // 2):
            angle = (4 + p) * 10000 ** (-2 * j / head_dim)
            a, b = x[..., p, 2 * j], x[..., p, 2 * j + 1]
            torch.testing.assert_close(rotated[..., p, 2 * j], a * math.cos(angle) - b * math.sin(angle))
            torch.testing.assert_close(rotated[..., p, 2 * j + 1], a * math.sin(angle) + b * math.cos(angle))
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))  # a rotation keeps lengths
    half = apply_rotary(x.bfloat16(), RotaryEmbedding(head_dim)(length, offset=4))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.double(), rotated, atol=0.05, rtol=0.02)


def test_rotary_scores_depend_only_on_the_distance():
    from labformer.position import RotaryEmbedding, apply_rotary

    rotary = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(query_position: int, key_position: int) -> float:
        return float((apply_rotary(q, rotary(1, query_position)) * apply_rotary(k, rotary(1, key_position))).sum())

    assert score(7, 3) == pytest.approx(score(104, 100), abs=1e-4)
    assert score(7, 3) != pytest.approx(score(7, 4), abs=1e-3)
    positions = torch.tensor([[4, 5, 6], [0, 1, 2]])  # one row of positions per sequence
    rotation = rotary(3, positions)
    assert rotation.shape == (2, 1, 3, 8) and rotation.is_complex()
    torch.testing.assert_close(rotation[0, 0], rotary(3, 4))


def test_rotary_refuses_odd_head_dimensions_and_bad_positions():
    from labformer.position import RotaryEmbedding

    with pytest.raises(ValueError, match="even, positive head dimension; got 5"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match=r"positions must have shape \(batch, 3\); got \(3,\)"):
        RotaryEmbedding(4)(3, torch.arange(3))
