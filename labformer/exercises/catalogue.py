"""The lab's fifteen exercises as data: each names its piece, its cases and its catalogue of mistakes.

A case is what a probe (:mod:`labformer.exercises.probes`) is given, with the call written out as code
(``shown``), smallest first: the first case on which a submission differs from the reference is the
smallest input that shows its mistake. A mistake is the reference piece with a few lines changed
(``edits``), exactly as a student would write it; its id keys its message in each language's catalogue
(``labformer/exercises/messages``). Adding a mistake is adding an entry here and its two messages.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from labformer.exercises import solutions
from labformer.exercises.messages import Messages

LAB_Q1 = [[3.0, 3.0]]
LAB_K = [[2.0, 1.5], [-4.0, 3.0], [0.0, 3.0], [-1.0, -4.0]]
LAB_V1 = [[-1.0, 2.0], [3.0, 4.0], [-2.0, -1.0], [0.0, 2.0]]
LAB_Q = [[3.0, 3.0], [-1.0, 3.2], [0.2, -0.4], [0.0, -1.0]]
LAB_V = [[-1.0, 2.0], [3.0, 4.0], [2.0, -3.0], [0.0, 2.0]]
LAB_SOFTMAX = [0.1, -0.2, 0.3, -0.2, 0.5]
# A mask that is not triangular, each row allowing at least one key
ODD_MASK = [[1, 0, 1, 0, 0], [0, 1, 0, 0, 1], [1, 1, 1, 0, 0], [0, 0, 0, 1, 0], [1, 0, 0, 1, 1]]


@dataclass(frozen=True)
class Case:
    """One call of a piece: the probe's arguments, and the call as the student would type it."""

    args: dict[str, Any]
    shown: str  # code: the same in every language
    note: str = ""  # a comment after the code: "case.<note>" in the messages, filled with ``fields``
    fields: tuple[tuple[str, str], ...] = ()
    lab: bool = False  # the lab's own example, whose printed values the student knows

    def describe(self, messages: Messages) -> str:
        """The call as code, with its comment in the messages' language."""
        if not self.note:
            return self.shown
        return f"{self.shown}  # {messages.text(f'case.{self.note}', **dict(self.fields))}"


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: the reference piece's source with ``edits`` (old, new) applied."""

    id: str
    edits: tuple[tuple[str, str], ...]
    accepted: bool = False  # a right answer by another convention (named, not failed)


@dataclass(frozen=True)
class Exercise:
    """One of the lab's blanks: the piece it fills, how it is probed, and what goes wrong."""

    number: int
    part: int
    key: str  # unique: the exercise's id in verdicts, grades and messages
    piece: str  # the lab's name of the function or class the student writes
    probe: str  # a name in probes.PROBES, or "module"
    cases: tuple[Case, ...]
    mistakes: tuple[Mistake, ...] = ()
    points: int = 1
    questions: int = 0  # how many of the lab's questions follow it (their text is in the messages)


def _lab_sdpa(mask: bool) -> Case:
    args: dict[str, Any] = {"q": LAB_Q, "k": LAB_K, "v": LAB_V, "normalize": True, "batch": True}
    shown = "scaled_dot_product_attention(q, k, v)"
    if mask:
        args["mask"] = {"size": 4}
        shown = "mask = torch.tril(torch.ones(4, 4, dtype=torch.bool)); scaled_dot_product_attention(q, k, v, mask)"
    return Case(args, shown, "lab_batched", lab=True)


SMALL_Q, SMALL_K, SMALL_V = [[1.0, 2.0]], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]
SMALL_QS = [[1.0, 2.0], [0.0, -1.0], [2.0, 0.5]]
TRIL3 = {"size": 3}


def _small(name: str, extra: str = "") -> str:
    return f"{name}(torch.tensor({SMALL_QS}), torch.tensor({SMALL_K}), torch.tensor({SMALL_V}){extra})"


def _module_case(piece: str, init: list[Any], x: tuple[int, ...], seed: int, **more: Any) -> Case:
    """A module case: ``piece(*init)`` in eval() on seeded inputs of shape ``x``, with the reference's weights."""
    args: dict[str, Any] = {"init": init, "x": list(x), "seed": seed, **more}
    call = {"self": "x, x, x", "single_input": "x", "encoder": "x"}
    kind = next((k for k in call if more.get(k)), "")
    inputs = call.get(kind, "q, k, v")
    mask = ""
    if more.get("mask"):
        size = more["mask"]["size"]
        mask = f", mask=torch.tril(torch.ones({size}, {size}, dtype=torch.bool))"
    names = "x" if kind else "q, k, v"
    shown = f"{piece}({', '.join(map(str, init))}).eval()({inputs}{mask})"
    return Case(args, shown, "random_named", (("names", names), ("shape", str(tuple(x)))))


def _head(init: list[Any], x: tuple[int, ...], seed: int, **more: Any) -> Case:
    dropout = [*init[:-1], 0.5]
    return _module_case("AttentionHead", init, x, seed, dropout_probe=dropout, labformer="AttentionHead", **more)


def _mha(init: list[Any], x: tuple[int, ...], seed: int, **more: Any) -> Case:
    dropout = [*init[:-1], 0.5]
    return _module_case("MultiHeadAttention", init, x, seed, dropout_probe=dropout, labformer="MultiHeadAttention",
                        **more)  # fmt: skip


def _nlp(init: list[Any], tokens: tuple[int, int], seed: int, **more: Any) -> Case:
    args = {"init": init, "tokens": [init[5], list(tokens)], "seed": seed, **more}
    shown = f"TransformerNLP({', '.join(map(str, init))}).eval()(x)"
    return Case(args, shown, "random_characters", (("shape", str(tokens)),))


EXERCISES: tuple[Exercise, ...] = (
    Exercise(1, 1, "simple_attention", "simple_attention", "single_query", (
        Case({"q": SMALL_Q, "k": SMALL_K, "v": SMALL_V},
             f"simple_attention(torch.tensor({SMALL_Q}), torch.tensor({SMALL_K}), torch.tensor({SMALL_V}))"),
        Case({"q": LAB_Q1, "k": LAB_K, "v": LAB_V1, "normalize": True},
             "simple_attention(q, k, v)", "lab_single", lab=True),
        Case({"seed": 11, "shapes": [[1, 5], [6, 5], [6, 5]]}, "simple_attention(q, k, v)", "random_single"),
    ), (
        Mistake("simple-no-scale", (("q @ k.T / math.sqrt(d)", "q @ k.T"),)),
        Mistake("simple-divide-by-d", (("math.sqrt(d)", "d"),)),
        Mistake("simple-softmax-wrong-axis", (("dim=-1)", "dim=0)"),)),
        Mistake("simple-no-softmax", (("F.softmax(q @ k.T / math.sqrt(d), dim=-1)", "q @ k.T / math.sqrt(d)"),)),
    ), questions=3),
    Exercise(2, 1, "attention_alpha", "attention_alpha", "alpha", (
        Case({"q": SMALL_Q, "k": SMALL_K}, f"attention_alpha(torch.tensor({SMALL_Q}), torch.tensor({SMALL_K}))"),
        Case({"q": LAB_Q1, "k": LAB_K, "normalize": True},
             "attention_alpha(q, k)", "lab_alpha", lab=True),
    ), (
        Mistake("alpha-no-softmax", (("F.softmax(q @ k.T / math.sqrt(d), dim=-1)", "q @ k.T / math.sqrt(d)"),)),
        Mistake("alpha-no-scale", (("q @ k.T / math.sqrt(d)", "q @ k.T"),)),
    )),
    Exercise(3, 1, "scaled_dot_product_attention", "scaled_dot_product_attention", "batched", (
        Case({"q": SMALL_QS, "k": SMALL_K, "v": SMALL_V, "batch": True},
             _small("scaled_dot_product_attention"), "batch_of_one"),
        _lab_sdpa(mask=False),
        Case({"seed": 21, "shapes": [[2, 5, 3]] * 3}, "scaled_dot_product_attention(q, k, v)", "random",
             (("shape", "(2, 5, 3)"),)),
    ), (
        Mistake("sdpa-no-scale", ((" / math.sqrt(q.size(-1))", ""),)),
        Mistake("sdpa-divide-by-d", (("math.sqrt(q.size(-1))", "q.size(-1)"),)),
        Mistake("sdpa-scale-by-tokens", (("math.sqrt(q.size(-1))", "math.sqrt(q.size(1))"),)),
        Mistake("sdpa-softmax-wrong-axis", (("F.softmax(attention, dim=-1)", "F.softmax(attention, dim=1)"),)),
    ), questions=1),
    Exercise(4, 1, "mask", "scaled_dot_product_attention", "batched", (
        Case({"q": SMALL_QS, "k": SMALL_K, "v": SMALL_V, "batch": True, "mask": TRIL3},
             _small("scaled_dot_product_attention", ", torch.tril(torch.ones(3, 3, dtype=torch.bool))"),
             "batch_of_one"),
        _lab_sdpa(mask=True),
        Case({"seed": 31, "shapes": [[2, 5, 3]] * 3, "mask": {"size": 5, "rows": ODD_MASK}},
             f"mask = torch.tensor({ODD_MASK}, dtype=torch.bool); scaled_dot_product_attention(q, k, v, mask)",
             "random", (("shape", "(2, 5, 3)"),)),
    ), (
        Mistake("mask-ignored", (('attention = attention.masked_fill(mask == 0, float("-inf"))', "pass"),)),
        Mistake("mask-zero-fill", (('masked_fill(mask == 0, float("-inf"))', "masked_fill(mask == 0, 0.0)"),)),
        Mistake("mask-reversed", (("masked_fill(mask == 0,", "masked_fill(mask == 1,"),)),
        Mistake("mask-after-softmax", (
            ('attention = attention.masked_fill(mask == 0, float("-inf"))', "pass"),
            ("return F.softmax(attention, dim=-1) @ v",
             "return F.softmax(attention, dim=-1).masked_fill(mask == 0, 0.0) @ v"),
        )),
    )),
    Exercise(5, 1, "masked_attention_weights", "masked_attention_weights", "masked_weights", (
        Case({"q": SMALL_QS, "k": SMALL_K, "batch": True, "mask": TRIL3},
             f"masked_attention_weights(torch.tensor({SMALL_QS}), torch.tensor({SMALL_K}), "
             "torch.tril(torch.ones(3, 3, dtype=torch.bool)))", "batch_of_one"),
        Case({"q": LAB_Q, "k": LAB_K, "normalize": True, "batch": True, "mask": {"size": 4}},
             "masked_attention_weights(q, k, mask)", "lab_heat_map", lab=True),
    ), (
        Mistake("weights-mask-after-softmax", (
            ('    attention = attention.masked_fill(mask == 0, float("-inf"))\n', ""),
            ("softmax = F.softmax(attention, dim=-1)", "softmax = F.softmax(attention, dim=-1).masked_fill(mask == 0, "
             "0.0)"),
        )),
        Mistake("weights-zero-fill", (('float("-inf")', "0.0"),)),
        Mistake("weights-no-scale", ((" / math.sqrt(q.size(-1))", ""),)),
    ), questions=4),
    Exercise(6, 1, "position_encoding", "position_encoding", "positions", (
        Case({"n_keys": 3, "dimension": 4}, "position_encoding(3, 4)"),
        Case({"n_keys": 64, "dimension": 128}, "position_encoding(64, 128)", "lab_positions_map",
             lab=True),
    ), (
        Mistake("pe-vaswani", (("(dim / dimension)", "((dim - dim % 2) / dimension)"),), accepted=True),
        Mistake("pe-phase-multiplied", (("pos / (10000", "pos * (10000"),)),
        Mistake("pe-missing-parentheses", (("pos / (10000 ** (dim / dimension))", "pos / 10000 ** dim / dimension"),)),
    )),
    Exercise(7, 1, "add_positions", "add_positions", "pair", (
        Case({"q": LAB_Q, "k": LAB_K, "normalize": True, "batch": True, "inputs": ["q", "k"]},
             "add_positions(q, k)", "lab_batched", lab=True),
        Case({"seed": 71, "shapes": [[1, 5, 4]] * 2, "inputs": ["q", "k"]}, "add_positions(q, k)", "random",
             (("shape", "(1, 5, 4)"),)),
    ), (
        Mistake("positions-query-only", (("k = k + position_encoding(n, d)", "k = k"),)),
    ), questions=1),
    Exercise(8, 1, "dot_products", "dot_products", "pair", (
        Case({"q": [[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]], "k": [[1.0, 0.0, 1.0], [2.0, 1.0, 0.0]], "inputs": ["q", "k"]},
             "dot_products(torch.tensor([[1., 2., 0.], [0., 1., 1.]]), torch.tensor([[1., 0., 1.], [2., 1., 0.]]))"),
        Case({"manual_seed": 1337, "shapes": [[32, 256]] * 2, "inputs": ["q", "k"], "variance": True},
             "torch.manual_seed(1337); q = torch.randn(32, 256); k = torch.randn(32, 256); dot_products(q, k)",
             "lab_variances", lab=True),
    ), (
        Mistake("variance-divide-by-d", (("dimension**-0.5", "dimension**-1"),)),
        Mistake("variance-elementwise", (("attention = q @ k.T", "attention = q * k"),)),
    ), questions=1),
    Exercise(9, 1, "softmaxes", "softmaxes", "pair", (
        Case({"x": [1.0, 0.0], "inputs": ["x"]}, "softmaxes(torch.tensor([1., 0.]))"),
        Case({"x": LAB_SOFTMAX, "inputs": ["x"]}, f"softmaxes(torch.tensor({LAB_SOFTMAX}))", "lab_example",
             lab=True),
    ), (
        Mistake("softmax-times-d", (("x * math.sqrt(dimension)", "x * dimension"),)),
        Mistake("softmax-divided", (("x * math.sqrt(dimension)", "x / math.sqrt(dimension)"),)),
    ), questions=2),
    Exercise(10, 2, "AttentionHead", "AttentionHead", "module", (
        _head([4, 3, 0.0], (1, 3, 4), 101),
        _head([4, 3, 0.0], (1, 3, 4), 102, self=True, mask={"size": 5}),
        _head([8, 5, 0.0], (2, 6, 8), 103, mask={"size": 6}),
    ), (
        Mistake("head-scaled-by-input-width", (("math.sqrt(q.size(-1))", "math.sqrt(C)"),)),
        Mistake("head-no-scale", ((" / math.sqrt(q.size(-1))", ""),)),
        Mistake("head-mask-not-cut", (("mask[:T, :T] == 0", "mask == 0"),)),
        Mistake("head-mask-after-softmax", (
            ('attention = attention.masked_fill(mask[:T, :T] == 0, float("-inf"))', "pass"),
            ("softmax = F.softmax(attention, dim=-1)\n", "softmax = F.softmax(attention, dim=-1)\n"
             "        if mask is not None:\n            softmax = softmax.masked_fill(mask[:T, :T] == 0, 0.0)\n"),
        )),
        Mistake("head-mask-zero-fill", (('float("-inf")', "0.0"),)),
        Mistake("head-with-bias", (("bias=False", "bias=True"),)),
        Mistake("head-no-dropout", (("softmax = self.dropout(softmax)", "softmax = softmax"),)),
    ), points=2),
    Exercise(11, 2, "MultiHeadAttention", "MultiHeadAttention", "module", (
        _mha([2, 4, 3, 0.0], (1, 3, 4), 111),
        _mha([2, 4, 3, 0.0], (1, 3, 4), 112, self=True, mask={"size": 5}),
        _mha([3, 6, 2, 0.0], (2, 4, 6), 113),
    ), (
        Mistake("mha-shared-heads", (("[AttentionHead(dim_embed, head_size, dropout) for _ in range(num_heads)]",
                                      "[AttentionHead(dim_embed, head_size, dropout)] * num_heads"),)),
        Mistake("mha-no-projection", (("return self.dropout(self.fc(out))", "return self.dropout(out)"),)),
        Mistake("mha-no-dropout", (("return self.dropout(self.fc(out))", "return self.fc(out)"),)),
    ), points=2),
    Exercise(12, 3, "FeedForward", "FeedForward", "module", (
        _module_case("FeedForward", [4, 0.0], (1, 3, 4), 121, single_input=True, dropout_probe=[4, 0.5],
                     labformer="FeedForward"),
        _module_case("FeedForward", [6, 0.0], (2, 5, 6), 122, single_input=True, dropout_probe=[6, 0.5],
                     labformer="FeedForward"),
    ), (
        Mistake("ffn-width-not-4d", (("4 * dim_model", "dim_model"),)),
        Mistake("ffn-no-relu", (("            nn.ReLU(),\n", ""),)),
        Mistake("ffn-wrong-activation", (("nn.ReLU()", "nn.GELU()"),)),
        Mistake("ffn-no-dropout", (("            nn.Dropout(dropout),\n", ""),)),
    ), points=2),
    Exercise(13, 3, "TransformerEncoderLayer", "TransformerEncoderLayer", "module", (
        _module_case("TransformerEncoderLayer", [4, 2, 0.0], (1, 3, 4), 131, dropout_probe=[4, 2, 0.5]),
        _module_case("TransformerEncoderLayer", [4, 2, 0.0], (1, 3, 4), 132, self=True, mask={"size": 5}),
        _module_case("TransformerEncoderLayer", [6, 3, 0.0], (2, 4, 6), 133, self=True),
    ), (
        Mistake("layer-residual-on-normalised", ((
            "q = q + self.attention(self.norm1_q(q), self.norm1_k(k), self.norm1_v(v), mask)",
            "q = self.norm1_q(q)\n        k = self.norm1_k(k)\n        v = self.norm1_v(v)\n"
            "        q = q + self.attention(q, k, v, mask)"),)),
        Mistake("layer-post-norm", (
            ("q = q + self.attention(self.norm1_q(q), self.norm1_k(k), self.norm1_v(v), mask)",
             "q = self.norm1_q(q + self.attention(q, k, v, mask))"),
            ("q = q + self.ffn(self.norm2(q))", "q = self.norm2(q + self.ffn(q))"),
        )),
        Mistake("layer-attention-residual-missing", (("q = q + self.attention(", "q = self.attention("),)),
        Mistake("layer-ffn-residual-missing", (("q = q + self.ffn(self.norm2(q))", "q = self.ffn(self.norm2(q))"),)),
        Mistake("layer-no-norm", (("self.attention(self.norm1_q(q), self.norm1_k(k), self.norm1_v(v), mask)",
                                   "self.attention(q, k, v, mask)"),)),
        Mistake("layer-one-norm-for-qkv", (("self.norm1_k(k), self.norm1_v(v)", "self.norm1_q(k), self.norm1_q(v)"),)),
        Mistake("layer-mask-not-passed", (("self.norm1_v(v), mask)", "self.norm1_v(v))"),)),
    ), points=2),
    Exercise(14, 4, "TransformerEncoder", "TransformerEncoder", "module", (
        _module_case("TransformerEncoder", [1, 4, 2, 3, 0.0], (1, 3, 4), 141, encoder=True),
        _module_case("TransformerEncoder", [2, 4, 2, 3, 0.0], (1, 3, 4), 142, encoder=True, mask={"size": 5}),
        _module_case("TransformerEncoder", [2, 6, 3, 5, 0.0], (2, 5, 6), 143, encoder=True),
    ), (
        Mistake("encoder-no-positions", (("        x = x + position_encoding(num_tokens, dim, x.device)\n", ""),)),
        Mistake("encoder-positions-each-layer", (
            ("        x = x + position_encoding(num_tokens, dim, x.device)\n", ""),
            ("            x = layer(x, x, x, mask)",
             "            x = x + position_encoding(num_tokens, dim, x.device)\n            x = layer(x, x, x, mask)"),
        )),
        Mistake("encoder-mask-not-passed", (("layer(x, x, x, mask)", "layer(x, x, x)"),)),
        Mistake("encoder-no-final-norm", (("        x = self.norm(x)\n", ""),)),
    ), points=2),
    Exercise(15, 5, "TransformerNLP", "TransformerNLP", "module", (
        _nlp([1, 4, 2, 7, 0.0, 7, 5], (1, 3), 151),
        _nlp([2, 6, 3, 9, 0.0, 9, 8], (2, 8), 152),
        Case({"init": [6, 384, 6, 65, 0.2, 65, 256], "count_only": True, "seed": 153},
             "TransformerNLP(6, 384, 6, 65, 0.2, 65, 256)", "lab_model", lab=True),
    ), (
        Mistake("nlp-positions-twice", (("        x = self.transformer(x, self.mask)",
                                         "        x = x + position_encoding(T, x.size(-1), x.device)\n"
                                         "        x = self.transformer(x, self.mask)"),)),
        Mistake("nlp-mask-not-passed", (("self.transformer(x, self.mask)", "self.transformer(x)"),)),
        Mistake("nlp-mask-upper", (("torch.tril(", "torch.triu("),)),
        Mistake("nlp-mask-reversed", (("self.transformer(x, self.mask)", "self.transformer(x, ~self.mask)"),)),
        Mistake("nlp-no-embedding", (("        x = self.embedding(x)\n", ""),)),
    ), points=2),
)  # fmt: skip

BY_KEY: dict[str, Exercise] = {exercise.key: exercise for exercise in EXERCISES}
PIECES: tuple[str, ...] = tuple(dict.fromkeys(exercise.piece for exercise in EXERCISES))
MISTAKES: dict[str, tuple[Exercise, Mistake]] = {m.id: (e, m) for e in EXERCISES for m in e.mistakes}


def find(name: str) -> list[Exercise]:
    """The exercise of that name, else the exercises of that piece (the function
    ``scaled_dot_product_attention`` is two: ``scaled_dot_product_attention`` and ``mask``)."""
    found = [BY_KEY[name]] if name in BY_KEY else [e for e in EXERCISES if name == e.piece]
    if not found:
        raise ValueError(f"no exercise is called {name!r}; the exercises are: {', '.join(BY_KEY)}")
    return found


@cache
def piece_sources() -> dict[str, str]:
    """Each piece's source in ``solutions.py``, with its answers between nbgrader's markers."""
    text = inspect.getsource(solutions)
    parts = re.split(r"^# %% (\w+)\n", text, flags=re.MULTILINE)
    return {name: body.strip("\n") + "\n" for name, body in zip(parts[1::2], parts[2::2])}


def without_markers(source: str) -> str:
    """A piece's source as runnable code: the answer kept, nbgrader's marker lines removed."""
    return "".join(line for line in source.splitlines(keepends=True) if "### BEGIN SOLUTION" not in line
                   and "### END SOLUTION" not in line)  # fmt: skip


def mistaken_source(exercise: Exercise, mistake: Mistake) -> str:
    """The piece as the mistake writes it: the reference's code with the mistake's edits."""
    source = without_markers(piece_sources()[exercise.piece])
    for old, new in mistake.edits:
        if old not in source:
            raise AssertionError(f"{mistake.id}: {old!r} is not in {exercise.piece}'s source")
        source = source.replace(old, new)
    return source


def mistaken_piece(exercise: Exercise, mistake: Mistake) -> Any:
    """The mistake's function or class, its other names resolving to the reference's pieces."""
    namespace = dict(vars(solutions))
    exec(compile(mistaken_source(exercise, mistake), f"<mistake {mistake.id}>", "exec"), namespace)
    return namespace[exercise.piece]
