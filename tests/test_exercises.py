"""labformer.exercises: the reference reproduces the lab's published values and labformer's modules; every
catalogued mistake, written as a wrong submission, is named by its id in both languages; right answers
written other ways pass; hostile submissions are contained; the CLI, the class report and the notebook."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labformer.exercises import check, check_file, solutions
from labformer.exercises.catalogue import (
    BY_KEY,
    EXERCISES,
    MISTAKES,
    PIECES,
    find,
    mistaken_piece,
    mistaken_source,
    piece_sources,
    without_markers,
)
from labformer.exercises.classroom import check_class
from labformer.exercises.judge import judge, pinned, run_cases
from labformer.exercises.messages import LANGUAGES, Messages, catalogue
from labformer.exercises.notebook import blank, write_exercises
from labformer.exercises.probes import labformer_module, labformer_weights, load_weights, randomise

HEADER = "import math\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n"


def submission(replaced: dict[str, str] | None = None, extra: str = "", header: str = HEADER) -> str:
    """The reference answers as a student's file, with some pieces' source replaced."""
    replaced = replaced or {}
    pieces = [replaced.get(p, without_markers(piece_sources()[p])) for p in PIECES]
    return header + "\n\n".join(pieces) + "\n" + extra


def verdicts_of(source: str, language: str = "en", **limits) -> dict[str, object]:
    """In-process verdicts for a source (trusted test code): each exercise run on its piece, pinned."""
    namespace: dict[str, object] = {"__name__": "submission"}
    exec(compile(source, "<submission>", "exec"), namespace)
    found = {}
    for exercise in EXERCISES:
        with pinned(namespace, exercise) as piece:
            found[exercise.key] = judge(exercise, run_cases(exercise, piece), Messages(language))
    return found


# --------------------------------------------------------------------------- the reference is right


def normalized(rows):
    return F.normalize(torch.tensor(rows), dim=1)


LAB_Q = [[3.0, 3.0], [-1, 3.2], [0.2, -0.4], [0, -1]]
LAB_K = [[2.0, 1.5], [-4, 3], [0, 3], [-1, -4]]
LAB_V = [[-1.0, 2], [3, 4], [2, -3], [0, 2]]


def test_the_reference_gives_the_labs_published_values():
    """LAB.md's numbers, printed by the lab to four decimals (its own reference differs by up to 5e-5)."""
    q1 = normalized([[3.0, 3.0]])
    k = normalized(LAB_K)
    v1 = normalized([[-1.0, 2], [3, 4], [-2, -1], [0, 2]])
    assert torch.allclose(solutions.simple_attention(q1, k, v1), torch.tensor([[-0.3584, 0.4563]]), atol=1e-4)
    alpha = solutions.attention_alpha(q1, k)
    assert round(alpha[0, 0].item(), 3) == 0.394 and alpha.argmax() == 0
    q, kb, v = normalized(LAB_Q)[None], k[None], normalized(LAB_V)[None]
    plain = [[0.1089, 0.3322], [0.2860, 0.2639], [0.0600, 0.6791], [0.0986, 0.7087]]
    masked = [[-0.4472, 0.8944], [0.1639, 0.8393], [0.1129, 0.3967], [0.0986, 0.7087]]
    tril = torch.tril(torch.ones(4, 4, dtype=torch.bool))
    assert torch.allclose(solutions.scaled_dot_product_attention(q, kb, v), torch.tensor([plain]), atol=1e-4)
    assert torch.allclose(solutions.scaled_dot_product_attention(q, kb, v, tril), torch.tensor([masked]), atol=1e-4)
    weights = solutions.masked_attention_weights(q, kb, tril)
    assert torch.allclose(weights @ v, torch.tensor([masked]), atol=1e-4)
    qp, kp = solutions.add_positions(q, kb)
    with_positions = [[0.2614, 0.0326], [0.2765, 0.0179], [0.1590, 0.2344], [0.1739, 0.4437]]
    assert torch.allclose(solutions.scaled_dot_product_attention(qp, kp, v), torch.tensor([with_positions]), atol=1e-4)
    torch.manual_seed(1337)
    attention, scaled = solutions.dot_products(torch.randn(32, 256), torch.randn(32, 256))
    assert round(attention.var().item(), 2) == 259.66 and round(scaled.var().item(), 3) == 1.014
    low, high = solutions.softmaxes(torch.tensor([0.1, -0.2, 0.3, -0.2, 0.5]))
    assert [round(x, 5) for x in low.tolist()] == [0.1925, 0.14261, 0.23512, 0.14261, 0.28717]
    assert [round(x, 5) for x in high.tolist()] == [0.00159, 1e-05, 0.0391, 1e-05, 0.95928]
    model = solutions.TransformerNLP(6, 384, 6, 65, 0.2, 65, 256)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 10.7


def test_the_reference_position_encoding_is_labformers_lab_variant():
    from labformer.position import sinusoidal_encoding

    assert torch.allclose(
        solutions.position_encoding(64, 128)[0], sinusoidal_encoding(64, 128, variant="lab"), atol=1e-4
    )


@pytest.mark.parametrize(
    ("kind", "init", "call"),
    [
        ("AttentionHead", [8, 5, 0.0], lambda m, x: m(x, x, x)),
        ("MultiHeadAttention", [3, 8, 5, 0.0], lambda m, x: m(x, x, x)),
        ("FeedForward", [8, 0.0], lambda m, x: m(x)),
    ],
)
def test_the_reference_loaded_with_labformers_weights_gives_labformers_outputs(kind, init, call):
    """The documented name mapping: labformer's own module and the lab-shaped reference compute alike."""
    reference = getattr(solutions, kind)(*init).eval()
    assert load_weights(reference, labformer_weights(kind, init, 3)) == "names"
    ours = randomise(labformer_module(kind, init), 3 + 1).eval()
    x = torch.randn(2, 6, 8)
    lab_form = {"AttentionHead": lambda: ours(x), "MultiHeadAttention": lambda: ours(x), "FeedForward": lambda: ours(x)}
    assert torch.allclose(call(reference, x), lab_form[kind](), atol=1e-5)


def test_the_reference_passes_and_each_case_is_distinct_from_every_mistake():
    """Every mistake differs from the reference on some case (a mistake that cannot be told apart could not be
    named), and no two mistakes of an exercise answer alike."""
    for exercise in EXERCISES:
        reference = run_cases(exercise, getattr(solutions, exercise.piece))
        assert judge(exercise, reference, Messages("en")).status == "pass", exercise.key
        answers = {}
        for mistake in exercise.mistakes:
            got = run_cases(exercise, mistaken_piece(exercise, mistake))
            verdict = judge(exercise, got, Messages("en"))
            assert verdict.mistake == mistake.id, (mistake.id, verdict.message)
            answers[mistake.id] = verdict


def test_there_are_at_least_25_mistakes_and_each_has_its_two_messages():
    assert len(MISTAKES) >= 25
    keys = {language: set(catalogue(language)) for language in LANGUAGES}
    assert keys["fr"] == keys["en"]
    for mistake_id in MISTAKES:
        for language in LANGUAGES:
            text = catalogue(language)[f"mistake.{mistake_id}"]
            assert 20 < len(text) < 400 and text.count(". ") <= 3, (language, mistake_id)
    assert catalogue("fr")["mistake.mask-zero-fill"] != catalogue("en")["mistake.mask-zero-fill"]


def test_the_messages_used_by_the_code_exist_in_both_catalogues():
    """Every key the code asks for (status, check, verdict, notebook texts) is in each catalogue."""
    source = "".join(p.read_text() for p in Path(solutions.__file__).parent.glob("*.py"))
    import re

    asked = set(re.findall(r'text\("([a-z_.]+)"', source))
    for exercise in EXERCISES:
        asked |= {f"ex.{exercise.key}.title", f"ex.{exercise.key}.text"}
        asked |= {f"ex.{exercise.key}.{x}{n}" for x in "qa" for n in range(1, exercise.questions + 1)}
    for language in LANGUAGES:
        assert asked <= set(catalogue(language)), asked - set(catalogue(language))
        for exercise in EXERCISES:  # each case's comment, in the student's language
            for case in exercise.cases:
                assert "#" not in case.shown and case.describe(Messages(language)).startswith(case.shown)


# --------------------------------------------------------------------------- each mistake, as a submission


def mistaken_submissions() -> list[tuple[str, dict[str, str]]]:
    """Submissions each holding at most one catalogued mistake per piece (so every piece's verdict is its
    own mistake's), until every mistake is in one: [(source, {exercise key: mistake id})]."""
    by_piece: dict[str, list] = {}
    for exercise in EXERCISES:
        by_piece.setdefault(exercise.piece, []).extend((exercise, m) for m in exercise.mistakes)
    rounds = max(len(v) for v in by_piece.values())
    built = []
    for index in range(rounds):
        replaced, expected = {}, {}
        for piece, mistakes in by_piece.items():
            if index < len(mistakes):
                exercise, mistake = mistakes[index]
                replaced[piece] = mistaken_source(exercise, mistake)
                expected[exercise.key] = mistake.id
        built.append((submission(replaced), expected))
    return built


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalogued_mistake_is_named_by_its_id_and_message(language):
    """In-process, in each language: the wrong submission's verdict names the mistake with its message."""
    messages = Messages(language)
    for source, expected in mistaken_submissions():
        verdicts = verdicts_of(source, language)
        for key, mistake_id in expected.items():
            verdict = verdicts[key]
            assert verdict.mistake == mistake_id, (key, verdict.message)
            assert messages.mistake(mistake_id) in verdict.message
            if not MISTAKES[mistake_id][1].accepted:
                assert verdict.status in ("fail", "error") and verdict.case, verdict.message


def test_every_catalogued_mistake_is_named_through_the_child_process(tmp_path):
    """The same, as `labformer check` runs it: each submission in a child process, verdicts judged here."""
    for index, (source, expected) in enumerate(mistaken_submissions()):
        path = tmp_path / f"wrong{index}.py"
        path.write_text(source)
        report = check_file(path, language="fr")
        named = {v.name: v.mistake for v in report.verdicts}
        assert {key: named[key] for key in expected} == expected


def test_mistakes_written_by_hand_other_ways_are_named():
    """Not the catalogue's own text: the same misconceptions in a student's words."""
    variants = {
        "mask-after-softmax": """
def scaled_dot_product_attention(q, k, v, mask=None):
    w = torch.softmax(torch.einsum("bnd,bmd->bnm", q, k) / q.shape[-1] ** 0.5, dim=-1)
    if mask is not None:
        w = w * mask
    return torch.bmm(w, v)
""",
        "simple-no-scale": """
def simple_attention(q, k, v):
    return F.softmax(torch.matmul(q, k.t()), dim=1) @ v
""",
        "mha-shared-heads": """
class MultiHeadAttention(nn.Module):
    def __init__(self, num_heads, dim_embed, head_size, dropout):
        super().__init__()
        head = AttentionHead(dim_embed, head_size, dropout)
        self.heads = nn.ModuleList([head for _ in range(num_heads)])
        self.fc = nn.Linear(num_heads * head_size, dim_embed)
        self.dropout = nn.Dropout(dropout)

    def forward(self, q, k, v, mask=None):
        return self.dropout(self.fc(torch.cat([h(q, k, v, mask) for h in self.heads], dim=-1)))
""",
    }
    pieces = {"mask-after-softmax": "scaled_dot_product_attention", "simple-no-scale": "simple_attention",
              "mha-shared-heads": "MultiHeadAttention"}  # fmt: skip
    for mistake_id, code in variants.items():
        verdicts = verdicts_of(submission({pieces[mistake_id]: code}))
        exercise = MISTAKES[mistake_id][0]
        assert verdicts[exercise.key].mistake == mistake_id, verdicts[exercise.key].message


def test_a_wrong_answer_outside_the_catalogue_still_gets_the_smallest_input():
    code = "def simple_attention(q, k, v):\n    return (F.softmax(q @ k.T / math.sqrt(q.size(-1)), dim=-1) @ v) * 2\n"
    verdict = verdicts_of(submission({"simple_attention": code}))["simple_attention"]
    assert verdict.status == "fail" and verdict.mistake is None
    assert verdict.case.startswith("simple_attention(torch.tensor([[1.0, 2.0]])")  # the smallest case, first
    assert verdict.expected != verdict.got and "check.out" not in verdict.message


# --------------------------------------------------------------------------- right answers, other ways


RIGHT = {
    "simple_attention": [
        "def simple_attention(q, k, v):\n    w = torch.exp(q @ k.T / q.shape[1] ** 0.5)\n"
        "    return (w / w.sum()) @ v\n",
        "def simple_attention(q, k, v):\n    return torch.softmax(torch.einsum('qd,nd->qn', q.double(), k.double())"
        " / math.sqrt(k.size(1)), -1) @ v.double()\n",
    ],
    "scaled_dot_product_attention": [
        """
def scaled_dot_product_attention(q, k, v, mask=None):
    attention = q.bmm(k.transpose(1, 2)) / math.sqrt(q.size(-1))
    if mask is not None:
        attention = attention.masked_fill(~mask.bool(), -1e9)
    return F.softmax(attention, dim=-1).bmm(v)
""",
        """
def scaled_dot_product_attention(q, k, v, mask=None):
    out = []
    for b in range(q.size(0)):  # one batch item at a time
        scores = q[b] @ k[b].T / q.size(-1) ** 0.5
        if mask is not None:
            scores = torch.where(mask.bool(), scores, torch.tensor(float('-inf')))
        out.append(torch.softmax(scores, dim=1) @ v[b])
    return torch.stack(out)
""",
        """
def scaled_dot_product_attention(q, k, v, mask=None):
    attention = q @ k.transpose(-2, -1)
    if mask is not None:
        attention[:, mask.logical_not()] = -torch.inf
    return F.softmax(attention / q.size(-1) ** 0.5, dim=-1) @ v
""",
    ],
    "position_encoding": [
        """
def position_encoding(n_keys, dimension, device=torch.device("cpu")):
    pe = torch.zeros(1, n_keys, dimension, dtype=torch.float64)
    for pos in range(n_keys):
        for i in range(dimension):
            angle = pos / 10000 ** (i / dimension)
            pe[0, pos, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return pe.to(device)
""",
    ],
    "AttentionHead": [
        """
class AttentionHead(nn.Module):
    def __init__(self, dim_embed, head_size, dropout):
        super().__init__()
        self.q_proj = nn.Linear(dim_embed, head_size, bias=False)
        self.k_proj = nn.Linear(dim_embed, head_size, bias=False)
        self.v_proj = nn.Linear(dim_embed, head_size, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, q, k, v, mask=None):
        B, T, C = q.shape
        q, k, v = self.q_proj(q), self.k_proj(k), self.v_proj(v)
        attention = torch.einsum("btd,bsd->bts", q, k) * q.size(-1) ** -0.5
        if mask is not None:
            attention = attention.masked_fill(mask[:T, :T] == 0, float("-inf"))
        return self.dropout(attention.softmax(-1)) @ v
""",
    ],
    "TransformerNLP": [  # the course's scaffold: a float 0/1 mask buffer
        without_markers(piece_sources()["TransformerNLP"]).replace(
            "torch.ones(block_size, block_size, dtype=torch.bool)", "torch.ones(block_size, block_size)"
        )
    ],
}


@pytest.mark.parametrize(("piece", "index"), [(p, i) for p, codes in RIGHT.items() for i in range(len(codes))])
def test_right_answers_written_other_ways_pass(piece, index):
    verdicts = verdicts_of(submission({piece: RIGHT[piece][index]}))
    for exercise in find(piece):
        assert verdicts[exercise.key].status == "pass", verdicts[exercise.key].message


def test_a_built_in_is_marked_as_such_and_still_runs():
    code = (
        "def scaled_dot_product_attention(q, k, v, mask=None):\n"
        "    return F.scaled_dot_product_attention(q, k, v, mask)\n"
    )
    namespace = {"__name__": "s"}
    exec(HEADER + code, namespace)
    verdicts = check(namespace["scaled_dot_product_attention"], lang="en")
    assert [v.status for v in verdicts] == ["builtin", "builtin"]
    assert "scaled_dot_product_attention" in verdicts[0].message


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_an_answer_computed_on_the_gpu_passes():
    code = ("def simple_attention(q, k, v):\n    q, k, v = q.cuda(), k.cuda(), v.cuda()\n"
            "    return F.softmax(q @ k.T / math.sqrt(q.size(-1)), dim=-1) @ v\n")  # fmt: skip
    assert verdicts_of(submission({"simple_attention": code}))["simple_attention"].status == "pass"


# --------------------------------------------------------------------------- check() in a notebook


def test_check_in_a_notebook_names_the_piece_and_strict_raises(capsys):
    from labformer.exercises.checker import ExerciseNotPassedError

    namespace = {"__name__": "__notebook__"}
    exec(submission({"FeedForward": mistaken_source(BY_KEY["FeedForward"], MISTAKES["ffn-no-relu"][1])}), namespace)
    verdicts = check(namespace["FeedForward"], lang="fr")
    assert verdicts[0].mistake == "ffn-no-relu"
    assert Messages("fr").mistake("ffn-no-relu") in capsys.readouterr().out
    with pytest.raises(ExerciseNotPassedError) as raised:
        check(namespace["FeedForward"], strict=True, lang="en")
    assert raised.value._render_traceback_() == [str(raised.value)]  # IPython shows the verdict, no traceback
    assert [v.status for v in check(namespace["TransformerNLP"], strict=True)] == ["pass"]


def test_check_by_name_looks_in_the_callers_names():
    simple_attention = solutions.simple_attention  # noqa: F841 (found by name)
    assert [v.status for v in check("simple_attention", lang="en")] == ["pass"]
    with pytest.raises(ValueError, match="no exercise is called"):
        check("simple_atention")


# --------------------------------------------------------------------------- a submission run apart


def run_check(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labformer", "check", str(path), *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_hostile_submissions_are_contained(tmp_path):
    """Endless loop, 50 GB, os._exit, fork, error at import, deleting files beside it, a fake verdict printed
    and written, torch.softmax monkeypatched: each gets a verdict naming what happened, and the rest goes on."""
    beside = tmp_path / "classmate.py"
    beside.write_text("x = 1\n")
    hostile = {
        "simple_attention": "def simple_attention(q, k, v):\n    while True:\n        pass\n",
        "attention_alpha": "def attention_alpha(q, k):\n    return torch.zeros(int(50e9), dtype=torch.uint8)\n",
        "softmaxes": "def softmaxes(x, dimension=256):\n    import os\n    os._exit(3)\n",
        "dot_products": "def dot_products(q, k):\n    import os\n    if os.fork() == 0:\n        import time\n"
                        "        time.sleep(60)\n    return q @ k.T, q @ k.T / 16\n",
    }  # fmt: skip
    extra = textwrap.dedent("""
        import os, pathlib
        for p in pathlib.Path(__file__).parent.iterdir():
            if p.name != pathlib.Path(__file__).name:
                p.unlink()
        pathlib.Path("verdicts.json").write_text('{"passed": 15, "total": 15}')
        print("✓ all passed")
        raise RuntimeError("at import")
        """)
    path = tmp_path / "hostile.py"
    path.write_text(submission(hostile, extra))
    (tmp_path / "sibling.txt").write_text("keep me")
    report = check_file(path, language="en", timeout=3)
    status = {v.name: v.status for v in report.verdicts}
    assert status["simple_attention"] == "timeout"
    assert status["attention_alpha"] == "error" and "memory" in report.verdicts[1].message
    assert status["softmaxes"] == "error" and "exit" in report.verdicts[8].message and "3" in report.verdicts[8].message
    assert status["dot_products"] == "fail"  # its answer is wrong (divided by 16, not sqrt(d)): judged, not lost
    others = [v for v in report.verdicts if v.name not in hostile]
    assert all(v.status == "pass" for v in others), [v.message for v in others if v.status != "pass"]
    assert "✓ all passed" in report.output and "✓ all passed" not in "".join(v.message for v in report.verdicts)
    assert any("RuntimeError: at import" in note for note in report.notes)
    assert any("other processes" in note for note in report.notes)
    assert beside.read_text() == "x = 1\n" and (tmp_path / "sibling.txt").exists()
    assert not (tmp_path / "verdicts.json").exists()
    leftover = subprocess.run(["pgrep", "-f", "labformer.exercises"], capture_output=True, text=True).stdout
    assert leftover.strip() == "", leftover


def test_a_submission_that_patches_torch_or_the_reference_changes_only_its_own_answers(tmp_path):
    extra = textwrap.dedent("""
        import torch, labformer.exercises.solutions as reference
        torch.softmax = lambda x, dim=-1, **kw: torch.zeros_like(x)
        reference.softmaxes = softmaxes
        """)
    path = tmp_path / "patcher.py"
    path.write_text(submission({}, extra))
    report = check_file(path, language="en", only="softmaxes")
    assert report.verdicts[0].status == "fail"  # its own torch.softmax is broken; the reference's is not
    assert torch.softmax(torch.tensor([0.0, 0.0]), dim=-1).tolist() == [0.5, 0.5]


def test_a_notebook_submission_cell_by_cell(tmp_path):
    paths = write_exercises(tmp_path, "en", solutions=True)
    notebook = json.loads(paths[0].read_text())
    notebook["cells"].insert(1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                                 "source": ["!pip install deeplib\n", "import deeplib\n"]})  # fmt: skip
    path = tmp_path / "student.ipynb"
    path.write_text(json.dumps(notebook))
    report = check_file(path, language="fr")
    assert report.passed == 15
    assert any("cellule 2" in note and "deeplib" in note for note in report.notes)


# --------------------------------------------------------------------------- the command line


def test_the_cli_on_the_handed_out_and_the_teachers_notebooks(tmp_path):
    wheel = "https://example.org/labformer-0.1.0-py3-none-any.whl"
    out = subprocess.run([sys.executable, "-m", "labformer", "exercises", "--lang", "fr", "--out", str(tmp_path),
                          "--install-from", wheel], capture_output=True, text=True, check=True)  # fmt: skip
    assert "lab8-exercises.ipynb" in out.stdout
    first = next(
        c for c in json.loads((tmp_path / "lab8-exercises.ipynb").read_text())["cells"] if c["cell_type"] == "code"
    )
    assert f'LABFORMER = "{wheel}"' in "".join(first["source"]) and "Installe labformer" in "".join(first["source"])
    subprocess.run([sys.executable, "-m", "labformer", "exercises", "--solutions", "--out", str(tmp_path)], check=True)
    handed_out = run_check(tmp_path / "lab8-exercises.ipynb", "--json")
    assert handed_out.returncode == 1, handed_out.stderr
    found = json.loads(handed_out.stdout)
    assert [e["status"] for e in found["exercises"]] == ["not_done"] * 15
    assert set(found) >= {"file", "exercises", "passed", "total"} and found["total"] == 15
    assert set(found["exercises"][0]) >= {"name", "status", "mistake", "message"}
    for suffix in (".ipynb", ".py"):
        teacher = run_check(tmp_path / f"lab8-exercises-solutions{suffix}", "--lang", "en")
        assert teacher.returncode == 0 and "15/15 exercises pass" in teacher.stdout, teacher.stdout + teacher.stderr
    student_py = (tmp_path / "lab8-exercises.py").read_text()
    assert "raise NotImplementedError()" in student_py and "BEGIN SOLUTION" not in student_py
    assert "HIDDEN TESTS" not in student_py and "strict=True" not in student_py


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nothere.py"], "no such file"),
        (["notes.txt"], "FILE must be a .py or .ipynb"),
        (["--only", "Attention"], "no exercise is called 'Attention'"),
        (["--timeout", "0"], "--timeout must be positive"),
        (["--class", "."], "--class needs --out"),
    ],
)
def test_a_bad_check_command_exits_2_with_one_line(tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "ok.py").write_text("")
    if args[0].startswith("--") and args[0] != "--class":
        args = [str(tmp_path / "ok.py"), *args]
    done = subprocess.run([sys.executable, "-m", "labformer", "check", *args], capture_output=True, text=True,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_language_defaults_to_french_where_the_locale_is(monkeypatch):
    from labformer.exercises.messages import default_language

    monkeypatch.setenv("LANG", "fr_CA.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    assert default_language() == "fr"
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert default_language() == "en"
    assert Messages("fr").percent(0.987) == "98,7\u00a0%" and Messages("en").percent(0.987) == "98.7\u00a0%"


# --------------------------------------------------------------------------- the class


def test_a_class_gets_grades_and_a_report(tmp_path):
    """Three students: a file, a sub-folder, one who has not started; the commonest mistake is counted."""
    folder = tmp_path / "class"
    (folder / "bob").mkdir(parents=True)
    wrong = {"AttentionHead": mistaken_source(BY_KEY["AttentionHead"], MISTAKES["head-mask-not-cut"][1])}
    (folder / "alice.py").write_text(submission(wrong))
    (folder / "bob" / "lab8.py").write_text(submission(wrong))
    write_exercises(folder / "carol", "en")
    (folder / "carol" / "lab8-exercises.py").unlink()
    reports = check_class(folder, tmp_path / "out", language="en", jobs=2)
    assert set(reports) == {"alice", "bob", "carol"}
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").open()))
    assert [r["student"] for r in rows] == ["alice", "bob", "carol"]
    assert rows[0]["AttentionHead"] == rows[1]["AttentionHead"] == "head-mask-not-cut"
    assert rows[0]["simple_attention"] == "pass" and rows[2]["simple_attention"] == "not_done"
    assert rows[0]["passed"] == "14" and rows[2]["passed"] == "0"
    page = (tmp_path / "out" / "report.html").read_text()
    assert "head-mask-not-cut</code> × 2" in page and "66.7\u00a0%" in page
    assert "http" not in page  # one offline file


# --------------------------------------------------------------------------- the notebook, with nbgrader


def test_the_student_copy_is_the_teachers_with_answers_blanked(tmp_path):
    student = json.loads(write_exercises(tmp_path, "en")[0].read_text())
    teacher = json.loads(write_exercises(tmp_path, "en", solutions=True)[0].read_text())
    assert len(student["cells"]) == len(teacher["cells"])
    for mine, theirs in zip(student["cells"], teacher["cells"]):
        if theirs["cell_type"] == "code" and "BEGIN SOLUTION" in "".join(theirs["source"]):
            assert "".join(mine["source"]) == blank("".join(theirs["source"]))
    graded = [c["metadata"]["nbgrader"] for c in teacher["cells"] if c["metadata"].get("nbgrader", {}).get("points")
              and c["cell_type"] == "code"]  # fmt: skip
    assert [g["points"] for g in graded] == [e.points for e in EXERCISES]


def test_nbgrader_generates_and_autogrades_the_notebook(tmp_path):
    """The teacher's copy as nbgrader's source: generate_assignment, then autograde the reference answers
    (full marks) and the handed-out notebook (zero)."""
    pytest.importorskip("nbgrader")
    course = tmp_path / "course"
    source = course / "source" / "lab8"
    source.mkdir(parents=True)
    write_exercises(tmp_path / "written", "en", solutions=True)
    (source / "lab8-exercises.ipynb").write_bytes(
        (tmp_path / "written" / "lab8-exercises-solutions.ipynb").read_bytes()
    )
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'lab8'\nc.CourseDirectory.db_assignments = [dict(name='lab8')]"
        "\nc.CourseDirectory.db_students = [dict(id='good'), dict(id='blank')]\nc.Execute.timeout = 120\n"
    )
    nbgrader = [sys.executable, "-m", "nbgrader"]

    def run(*args: str) -> str:
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # its alembic, jupyter
        done = subprocess.run([*nbgrader, *args], cwd=course, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PATH": path})  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    run("generate_assignment", "lab8", "--force")
    released = json.loads((course / "release" / "lab8" / "lab8-exercises.ipynb").read_text())
    text = json.dumps(released)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "NotImplementedError" in text
    for student, notebook in (("good", source / "lab8-exercises.ipynb"),
                              ("blank", course / "release" / "lab8" / "lab8-exercises.ipynb")):  # fmt: skip
        target = course / "submitted" / student / "lab8"
        target.mkdir(parents=True)
        (target / "lab8-exercises.ipynb").write_bytes(notebook.read_bytes())
    run("autograde", "lab8", "--force")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {s: gradebook.find_submission("lab8", s).code_score for s in ("good", "blank")}
    assert scores == {"good": sum(e.points for e in EXERCISES), "blank": 0}


def test_the_mistakes_page_is_the_catalogue():
    """docs/exercises/mistakes.md lists every mistake id with its two messages, as the catalogue holds them."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "mistakes_page.py"
    spec = importlib.util.spec_from_file_location("mistakes_page", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = module.PAGE.read_text(encoding="utf-8")
    assert page == module.render(), "run: python scripts/mistakes_page.py"
    for mistake_id in MISTAKES:
        assert f"`{mistake_id}`" in page and catalogue("fr")[f"mistake.{mistake_id}"].split(":")[0] in page
