"""The web API of ``labformer serve`` on the pretrained models shipped in the package: every route,
every bad input, answers checked against the models called directly; 50 concurrent predictions."""

from __future__ import annotations

import asyncio
import io as bytes_io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image, ImageDraw
from starlette.testclient import TestClient

from labformer import runs
from labformer.attention import attention_rollout, record_attention
from labformer.data import load_mnist
from labformer.predict import load_image
from labformer.serve.app import MAX_BODY
from labformer.serve.models import PRETRAINED, find_runs

SHIPPED_DIRS = ("digits", "text", "dates")


@pytest.fixture(scope="module")
def client(served) -> TestClient:
    return served[0]


@pytest.fixture(scope="module")
def mnist_test():
    return load_mnist().test


def png(pixels: np.ndarray, kind: str = "PNG") -> bytes:
    buffer = bytes_io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=kind)
    return buffer.getvalue()


def drawn_digit(points: list[tuple[int, int]]) -> bytes:
    """What the digits page sends: a 280×280 black canvas with a white stroke 18 px wide."""
    image = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(image).line(points, fill=255, width=18, joint="curve")
    buffer = bytes_io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def predict(client: TestClient, body: bytes, content_type: str = "image/png") -> httpx.Response:
    return client.post("/api/digits/predict", content=body, headers={"Content-Type": content_type})


def test_with_no_run_directory_the_pretrained_models_are_served(served, client):
    _, chosen, _ = served
    assert chosen == {"vit": PRETRAINED / "digits", "gpt": PRETRAINED / "text", "seq2seq": PRETRAINED / "dates"}
    health = client.get("/api/health").json()
    assert health["digits"]["name"] == "shipped digits model" and health["text"]["name"] == "shipped text model"
    assert health["digits"]["summary"] == "98.70 % test accuracy on MNIST"  # the float16 weights' (recomputed below)
    assert health["text"]["summary"] == "validation loss 1.452 nats/character (the whole validation split)"
    assert str(PRETRAINED.parent) not in json.dumps(health)  # no path of the server's disk
    assert health["digits"]["metrics"] == json.loads((PRETRAINED / "digits" / "metrics.json").read_text())
    assert health["digits"]["classes"] == [str(i) for i in range(10)]
    assert (health["digits"]["layers"], health["digits"]["heads"], health["digits"]["grid"]) == (3, 4, 4)
    assert health["text"]["metrics"] == json.loads((PRETRAINED / "text" / "metrics.json").read_text())
    assert health["seq2seq"]["name"] == "shipped dates model"
    assert health["seq2seq"]["metrics"] == json.loads((PRETRAINED / "dates" / "metrics.json").read_text())
    exact = health["seq2seq"]["metrics"]["shipped"]["test_exact"]
    assert health["seq2seq"]["summary"] == f"{exact * 100:.2f} % exact on held-out dates"
    assert len(health["seq2seq"]["examples"]) == 6
    shipped = {kind: json.loads((PRETRAINED / kind / "metrics.json").read_text())["shipped"] for kind in SHIPPED_DIRS}
    assert health["digits"]["reached"] == {
        "measure": "accuracy",
        "value": shipped["digits"]["test_accuracy"],
        "on": "mnist",
    }
    assert health["text"]["reached"] == {"measure": "loss", "value": shipped["text"]["val_loss_full"], "on": "full"}
    assert health["seq2seq"]["reached"] == {"measure": "exact", "value": exact, "on": "dates"}
    assert [health[k]["shipped"] for k in ("digits", "text", "seq2seq")] == ["digits", "text", "dates"]
    assert health["seq2seq"]["years"] == [1000, 2999] and health["digits"]["dataset"] == "mnist"
    for name in ("digits", "text", "dates"):
        assert (PRETRAINED / name / runs.MODEL).stat().st_size < 2_000_000  # the package stays small


def test_the_shipped_models_numbers_are_recomputed_from_their_weights(mnist_test):
    """What the shipped metrics (and so the page and the docs) say, recomputed from the float16 weights:
    the digits model's MNIST test accuracy and loss, the text model's loss on the whole validation split."""
    model, run = runs.load_run(PRETRAINED / "digits")
    shipped = json.loads((PRETRAINED / "digits" / "metrics.json").read_text())["shipped"]
    x = (mnist_test.images.float() / 255 - run["mean"][0]) / run["std"][0]
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in x.split(1000)])
    accuracy = float((logits.argmax(-1) == mnist_test.labels).float().mean())
    assert accuracy == pytest.approx(shipped["test_accuracy"], abs=1e-4) and accuracy >= 0.985
    loss = float(torch.nn.functional.cross_entropy(logits, mnist_test.labels))
    assert loss == pytest.approx(shipped["test_loss"], abs=1e-4)
    from labformer.data.text import CharTokenizer, load_text

    text_model, text_run = runs.load_run(PRETRAINED / "text")
    tokenizer = CharTokenizer(json.loads((PRETRAINED / "text" / "vocab.json").read_text()))
    data = load_text(None, block_size=text_model.config.block_size, tokenizer=tokenizer)
    total, count = text_model.sequence_loss(data.val)
    shipped = json.loads((PRETRAINED / "text" / "metrics.json").read_text())["shipped"]
    assert total / count == pytest.approx(shipped["val_loss_full"], abs=1e-4) and total / count < 1.47


def test_the_shipped_dates_models_numbers_are_recomputed_from_its_weights():
    """The shipped encoder-decoder's held-out exact match and character accuracy, from its float16 weights:
    the test split regenerated from the run's config, decoded greedily, compared with the ISO dates."""
    from labformer.training.translation import open_translation_run
    from labformer.translate import translate_texts

    model, data = open_translation_run(PRETRAINED / "dates", splits=True)
    test = data.splits["test"]
    outputs = translate_texts(model, data, [source for source, _, _ in test])
    exact = sum(output == target for output, (_, target, _) in zip(outputs, test)) / len(test)
    shipped = json.loads((PRETRAINED / "dates" / "metrics.json").read_text())["shipped"]
    # Another CPU may sum in another order: a pair or two of 5,000 may decode differently there.
    assert exact == pytest.approx(shipped["test_exact"], abs=5e-4) and exact >= 0.99


def test_translate_answers_what_the_model_writes_with_its_three_attentions(client):
    from labformer.training.translation import open_translation_run
    from labformer.translate import translate_texts

    model, data = open_translation_run(PRETRAINED / "dates")
    for text, beam in (("mercredi 3 mars 2021", 1), ("March 3rd, 2021", 4), ("03/04/2021", 1)):
        answer = client.post("/api/seq2seq/translate", json={"text": text, "beam": beam}).json()
        assert answer["output"] == translate_texts(model, data, [text], beam=beam)[0]
        rows = len(answer["output_tokens"])
        assert answer["output_tokens"][: len(answer["output"])] == list(answer["output"])
        assert len(answer["probabilities"]) == rows and all(0 < p <= 1 for p in answer["probabilities"])
        layers, heads = model.config.decoder_layers, model.config.num_heads
        cross = np.array(answer["attention"]["cross"])
        assert cross.shape == (layers, heads, rows, len(text))
        np.testing.assert_allclose(cross.sum(-1), 1.0, atol=1e-3)
        decoder = np.array(answer["attention"]["decoder"])
        assert decoder.shape == (layers, heads, rows, rows) and np.all(np.triu(decoder, 1) == 0)
        encoder = np.array(answer["attention"]["encoder"])
        assert encoder.shape == (model.config.encoder_layers, heads, len(text), len(text))
    assert client.post("/api/seq2seq/translate", json={"text": "3 mars 2021"}).json()["output"] == "2021-03-03"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": ""}, "text must be a non-empty string"),
        ({"text": "3 mars 2021", "beam": 0}, "beam must be between 1 and 16; got 0"),
        ({"text": "3 mars 2021", "beam": 17}, "beam must be between 1 and 16; got 17"),
        ({"text": "3 mars 2021", "beam": "4"}, 'beam must be int; got "4"'),
        ({"text": "x" * 200}, "text has 200 characters; this model reads at most"),
        ({"text": "3 mars", "lang": "fr"}, "unknown fields ['lang']"),
    ],
)
def test_translate_refuses_bad_requests_naming_the_field(client, body, message):
    answer = client.post("/api/seq2seq/translate", json=body)
    assert answer.status_code == 400 and message in answer.json()["error"]


def test_predict_reads_real_digits_like_the_model_itself(client, mnist_test):
    model, run = runs.load_run(PRETRAINED / "digits")
    correct = 0
    for i in range(30):
        pixels = mnist_test.images[i, 0].numpy()
        body = png(pixels) if i % 2 else png(pixels, "JPEG")
        answer = predict(client, body, "image/png" if i % 2 else "image/jpeg")
        assert answer.status_code == 200, answer.text
        result = answer.json()
        seen = load_image(body, channels=1, size=28, mnist_style=True)
        assert result["input"] == seen[0].tolist()
        x = (seen[None].float() / 255 - torch.tensor(run["mean"])) / torch.tensor(run["std"])
        with torch.no_grad(), record_attention(model) as maps:
            expected = model(x).softmax(-1)[0]
        np.testing.assert_allclose(result["probabilities"], expected.numpy(), atol=1e-5)
        assert result["prediction"] == str(int(expected.argmax()))
        attention = result["attention"]
        assert (attention["layers"], attention["heads"], attention["grid"]) == (3, 4, 4)
        cls = np.array(attention["cls"])
        np.testing.assert_allclose(cls, torch.stack([m[0, :, 0, 1:] for m in maps]).numpy(), atol=1e-5)
        rollout = attention_rollout(maps)[0, 0, 1:]
        np.testing.assert_allclose(attention["rollout"], (rollout / rollout.sum()).numpy(), atol=1e-5)
        correct += result["prediction"] == str(int(mnist_test.labels[i]))
        assert result["empty"] is False
    assert correct >= 29


def test_a_picture_with_no_ink_is_answered_as_empty_not_as_a_digit(client, mnist_test):
    for blank in (np.full((64, 64), 255, np.uint8), np.full((28, 28), 0, np.uint8), np.full((40, 40), 128, np.uint8)):
        result = predict(client, png(blank)).json()
        assert result["empty"] is True and result["prediction"] is None
        assert np.array(result["input"]).max() == 0 and len(result["probabilities"]) == 10
    # a black digit on a transparent sheet (what a canvas export writes) is read as the plain digit
    ink = mnist_test.images[0, 0].numpy()
    sheet = np.zeros((28, 28, 4), np.uint8)
    sheet[..., 3] = ink
    buffer = bytes_io.BytesIO()
    Image.fromarray(sheet, "RGBA").save(buffer, format="PNG")
    result = predict(client, buffer.getvalue()).json()
    assert result["empty"] is False and result["prediction"] == predict(client, png(ink)).json()["prediction"]


@pytest.mark.parametrize(
    ("digit", "stroke"),
    [("1", [(140, 40), (142, 240)]), ("7", [(70, 50), (210, 50), (120, 240)])],
)
def test_predict_a_digit_drawn_on_the_page(client, digit, stroke):
    result = predict(client, drawn_digit(stroke)).json()
    assert result["prediction"] == digit, result["probabilities"]
    assert sum(result["probabilities"]) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"", "image/png", 400, "the body is empty"),
        (b"not an image at all", "image/png", 400, "cannot read the image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png", 400, "cannot read the image"),
        (b"x", "application/json", 415, "image/png or image/jpeg"),
        (b"x", "", 415, "got Content-Type"),
        (b"\0" * (10 * 1024 * 1024), "image/png", 413, "limit"),
        (b"\0" * (MAX_BODY + 1), "image/png", 413, "limit"),
    ],
    ids=["empty", "text", "truncated-png", "json-type", "no-type", "10-MB", "just-over"],
)
def test_bad_images_get_a_4xx_that_names_the_problem(client, body, content_type, status, message):
    answer = predict(client, body, content_type)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert " at 0x" not in answer.json()["error"]  # no Python object's address reaches a user
    assert client.get("/api/health").status_code == 200  # it keeps answering


def collect(client: TestClient, payload: dict) -> tuple[int, str]:
    with client.stream("POST", "/api/text/generate", json=payload) as response:
        return response.status_code, "".join(response.iter_text())


def test_generate_streams_what_the_model_samples(client):
    model, _ = runs.load_run(PRETRAINED / "text")
    vocabulary = json.loads((PRETRAINED / "text" / runs.VOCAB).read_text())
    prompt = "ROMEO:"
    status, text = collect(client, {"prompt": prompt, "tokens": 80, "temperature": 0.8, "top_k": 20, "seed": 7})
    assert status == 200 and len(text) == 80
    ids = torch.tensor([[vocabulary.index(c) for c in prompt]])
    expected = model.generate(ids, 80, 0.8, 20, generator=torch.Generator().manual_seed(7))
    assert text == "".join(vocabulary[i] for i in expected[0, len(prompt) :].tolist())
    assert collect(client, {"prompt": prompt, "tokens": 80, "temperature": 0.8, "top_k": 20, "seed": 7})[1] == text
    assert collect(client, {"prompt": prompt, "tokens": 80, "seed": 8})[1] != text


def test_generate_streams_in_pieces(client):
    """The text leaves in several body messages. Read at the ASGI interface, as a server sees it: some
    versions of Starlette's test client join a stream's pieces before handing them over."""
    body = json.dumps({"prompt": "A", "tokens": 40, "seed": 1}).encode()
    sent: list[dict] = []
    requests = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client stays connected until the answer ends
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"host", b"localhost"), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/text/generate", "raw_path": b"/api/text/generate", "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 50000), "server": ("localhost", 8000),
    }  # fmt: skip
    asyncio.run(client.app(scope, receive, send))
    start, *pieces = sent
    assert start["status"] == 200 and dict(start["headers"])[b"content-type"].startswith(b"text/plain")
    chunks = [piece["body"] for piece in pieces if piece["body"]]
    assert len(chunks) > 1 and len(b"".join(chunks).decode()) == 40


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not json", "not JSON"),
        ([1, 2], "must be a JSON object"),
        ({"prompt": "A", "colour": 1}, "unknown fields ['colour']"),
        ({"prompt": "A", "tokens": 0}, "tokens must be between 1 and 2000; got 0"),
        ({"prompt": "A", "tokens": 2001}, "got 2001"),
        ({"prompt": "A", "tokens": "5"}, 'tokens must be int; got "5"'),
        ({"prompt": "A", "tokens": True}, "tokens must be int; got true"),
        ({"prompt": "A", "temperature": 0}, "temperature must be positive; got 0"),
        ({"prompt": "A", "temperature": -1.5}, "got -1.5"),
        ({"prompt": "A", "top_k": 0}, "top_k must be positive"),
        ({"prompt": "A", "seed": -1}, "seed must be between"),
        ({"prompt": ""}, "prompt must not be empty"),
        ({"prompt": 5}, "prompt must be str"),
        ({"prompt": "Café €"}, "characters this model never saw: 'é', '€'"),
    ],
)
def test_bad_generation_requests_get_a_400_that_names_the_problem(client, payload, message):
    body = payload if isinstance(payload, str) else json.dumps(payload)
    answer = client.post("/api/text/generate", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_attention_is_the_models_causal_attention(client):
    model, _ = runs.load_run(PRETRAINED / "text")
    vocabulary = json.loads((PRETRAINED / "text" / runs.VOCAB).read_text())
    text = "First Citizen:\nBefore we proceed"
    result = client.post("/api/text/attention", json={"text": text}).json()
    assert result["tokens"] == list(text) and result["offset"] == 0
    weights = np.array(result["attention"])  # (L, H, T, T)
    assert weights.shape == (4, 4, len(text), len(text))
    with torch.no_grad(), record_attention(model) as maps:
        model(torch.tensor([[vocabulary.index(c) for c in text]]))
    np.testing.assert_allclose(weights, torch.stack([m[0] for m in maps]).numpy(), atol=1e-4)
    np.testing.assert_allclose(weights.sum(-1), 1, atol=1e-3)
    assert np.all(np.triu(weights, 1) == 0)  # nothing attends to the future


def test_attention_of_a_long_text_keeps_the_last_block(client):
    text = "To be, or not to be: that is the question. " * 5
    result = client.post("/api/text/attention", json={"text": text}).json()
    block = client.get("/api/health").json()["text"]["block_size"]
    assert result["offset"] == len(text) - block and "".join(result["tokens"]) == text[-block:]


@pytest.mark.parametrize(
    ("payload", "message"),
    [({}, "text must be a non-empty string"), ({"text": 3}, "text must be str"), ({"text": "naïve"}, "'ï'")],
)
def test_bad_attention_requests(client, payload, message):
    answer = client.post("/api/text/attention", json=payload)
    assert answer.status_code == 400 and message in answer.json()["error"]


def test_pages_and_their_files_are_all_served_locally(client):
    assert client.get("/", follow_redirects=False).headers["location"] == "/digits"
    for page in ("digits", "text", "lab"):
        answer = client.get(f"/{page}")
        assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
        links = [part.split('"')[1] for part in answer.text.split(" ")[1:] if part.startswith(("src=", "href="))]
        assert links, page
        for link in links:
            assert link.startswith(("/", "data:")), f"{page} loads {link} from elsewhere"  # no CDN
            if link.startswith("/static/"):
                assert client.get(link).status_code == 200, link
    assert client.get("/api/nothing").json() == {"error": "Not Found"}


def test_the_lab_page_shows_the_report_once_it_exists(served, client):
    _, _, lab = served
    answer = client.get("/api/lab").json()
    assert not answer["available"] and f"labformer lab all --out {lab.name}" in answer["message"]
    assert str(lab.parent) not in answer["message"]  # the folder by name, never a path of the disk
    (lab / "report.html").write_text("<h1>Lab 8</h1><img src='attention.png'>")
    answer = client.get("/api/lab").json()
    assert answer["available"] and client.get(answer["report"]).text.startswith("<h1>Lab 8")


def test_newest_runs_are_served_and_bad_run_directories_are_refused(tmp_path):
    root = tmp_path / "runs"
    for name, kind in (("a-old", "gpt"), ("b-new", "gpt"), ("c", "vit")):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text(json.dumps({"kind": kind, "model": {}, "train": {}}))
        (root / name / "model.safetensors").write_bytes(b"")
    os.utime(root / "a-old" / "model.safetensors", (1, 1))
    shipped = {"seq2seq": PRETRAINED / "dates"}  # no seq2seq run under runs/: the shipped one
    assert find_runs([], root) == {"gpt": root / "b-new", "vit": root / "c", **shipped}
    assert find_runs([root / "a-old"], root) == {"gpt": root / "a-old"}
    (root / "d").mkdir()
    with pytest.raises(FileNotFoundError):
        find_runs([root / "d"], root)


def test_fifty_concurrent_predictions_are_all_answered_correctly(live_server, mnist_test):
    bodies = [(png(mnist_test.images[i, 0].numpy()), str(int(mnist_test.labels[i]))) for i in range(50)]
    with httpx.Client(base_url=live_server, timeout=60) as session:
        single = {i: session.post("/api/digits/predict", content=b, headers={"Content-Type": "image/png"}).json()
                  for i, (b, _) in enumerate(bodies)}  # fmt: skip

        def ask(i: int) -> dict:
            return session.post(
                "/api/digits/predict", content=bodies[i][0], headers={"Content-Type": "image/png"}
            ).json()

        with ThreadPoolExecutor(50) as pool:
            together = list(pool.map(ask, range(50)))
    for i, result in enumerate(together):
        assert result["probabilities"] == single[i]["probabilities"]  # no request saw another's attention
        assert result["attention"] == single[i]["attention"]
    assert sum(result["prediction"] == label for result, (_, label) in zip(together, bodies)) >= 48


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be between 1 and 65535"),
        (["/no/such/run"], "run directory /no/such/run does not exist"),
    ],
)
def test_serve_command_bad_input_is_one_line(args, message):
    result = run_cli("serve", *args, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("labformer: error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_command_refuses_a_taken_port(live_server):
    port = live_server.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "labformer", "serve", "--port", port], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
