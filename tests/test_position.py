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
