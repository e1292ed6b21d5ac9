"""The web application of ``labformer serve``: four pages and the JSON API they use (Starlette).

Pages: ``/digits`` (draw a digit, watch every head attend), ``/text`` (watch the GPT write and attend),
``/seq2seq`` (type an input, watch the encoder–decoder write it and attend three ways), ``/lab`` (the
``labformer lab all`` report), each in English or French: ``?lang=en|fr``, else the browser's
``Accept-Language``, else English (:mod:`labformer.serve.pages`). API (in English; errors are
``{"error": message}`` with a 4xx status):

- ``GET /api/health``: the models served, each named in words (never a path), what it reaches, its
  metrics, the facts a page words in its own language (``reached``, ``shipped``, ``dataset``, ``years``); and the usage
  so far (predictions, characters generated, translations, requests refused).
- ``POST /api/digits/predict``: body = PNG or JPEG bytes -> prediction (null, with ``"empty": true``, for a
  picture with no ink), probabilities, the 28×28 input
  and the class token's attention per layer and head, with the rollout.
- ``POST /api/text/generate``: JSON {prompt, tokens, temperature, top_k, seed} -> the generated
  characters, streamed as plain text while they are sampled.
- ``POST /api/text/attention``: JSON {text} -> per layer and head the causal attention matrix.
- ``POST /api/seq2seq/translate``: JSON {text, beam} -> the output, the probability of each written
  character, and per layer and head the encoder's self-attention, the decoder's causal self-attention and
  the cross-attention (each output position over the input characters).
- ``GET /api/lab``: whether a lab report is there to browse and whether this server may build it;
  ``POST /api/lab/build`` builds it (every experiment of the lab, about 15 s on 2 CPU cores) when the
  server was started with ``--allow-build`` (else 403); while a build runs, another gets 409.

Every request passes :class:`labformer.serve.security.HostGuard` (403 for a foreign ``Host`` or a
cross-site POST). No answer names a path of the server's disk: runs are named in words or by their
folder's name. Everything the pages load is served from the package: no CDN, no network.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from labformer.serve.i18n import LANGUAGES, choose_language
from labformer.serve.models import MAX_BEAM, MAX_TOKENS, DigitModel, Seq2SeqModel, TextModel
from labformer.serve.pages import render_page
from labformer.serve.runner import ANSWER, STREAM, ModelThread
from labformer.serve.security import HostGuard, Hosts

__all__ = ["MAX_BODY", "create_app"]

STATIC = Path(__file__).parent / "static"
MAX_BODY = 2 * 1024 * 1024  # bytes: a drawn digit is a few kB, a phone photo well under this
IMAGE_TYPES = ("image/png", "image/jpeg")


def _error(status: int, message: str) -> HTTPException:
    return HTTPException(status, message)


async def _body(request: Request) -> bytes:
    """The request body, refused with 413 beyond MAX_BODY (before reading it all when the size is declared)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _error(413, f"the body is {int(declared):,} bytes; the limit is {MAX_BODY:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _error(413, f"the body is over the limit of {MAX_BODY:,} bytes")
    return bytes(body)


async def _json(request: Request, fields: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """The JSON object of the body, with only ``fields`` (name -> accepted types; None allowed if listed)."""
    body = await _body(request)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _error(400, f"the body is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise _error(400, f"the body must be a JSON object; got {type(data).__name__}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _error(400, f"unknown fields {unknown}; expected some of {sorted(fields)}")
    for name, value in data.items():
        types = fields[name]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise _error(400, f"{name} must be {names}; got {json.dumps(value)}")
    return data


def _language(request: Request) -> str:
    """The language of the page asked for: ``?lang=``, else the browser's ``Accept-Language``, else English."""
    return choose_language(request.query_params.get("lang"), request.headers.get("accept-language"))


def _page(name: str):
    async def page(request: Request) -> HTMLResponse:
        language = _language(request)
        headers = {"Content-Language": language, "Vary": "Accept-Language"}  # a cache keeps one per language
        return HTMLResponse(render_page(name, language), headers=headers)

    return page


def _home(request: Request) -> RedirectResponse:
    """``/`` is the digits page, in the language the address asks for if it does."""
    asked = request.query_params.get("lang")
    return RedirectResponse(f"/digits?lang={asked}" if asked in LANGUAGES else "/digits")


def create_app(
    digits: DigitModel | None,
    text: TextModel | None,
    lab_dir: Path | None = None,
    seq2seq: Seq2SeqModel | None = None,
    *,
    hosts: Hosts | None = None,
    allow_build: bool = False,
) -> Starlette:
    """The application serving ``digits``, ``text`` and ``seq2seq`` (any may be None) and the report in
    ``lab_dir``, answering the ``Host`` names of ``hosts`` (default: this machine's loopback names only);
    ``allow_build`` lets a visitor run ``POST /api/lab/build``."""
    lab_dir = Path(lab_dir) if lab_dir is not None else None
    building = asyncio.Lock()  # one lab build at a time: a second request gets 409, never a second writer
    refused = {"host": 0, "origin": 0}  # counted by the guard, reported by /api/health
    models = ModelThread()  # every model call, answers before stream steps (see labformer.serve.runner)

    def need(model: Any, what: str) -> Any:
        if model is None:
            raise _error(404, f"no {what} model is loaded (pass a run directory to labformer serve)")
        return model

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "digits": digits.describe() if digits else None,
                "text": text.describe() if text else None,
                "seq2seq": seq2seq.describe() if seq2seq else None,
                "usage": {
                    "predictions": digits.answered if digits else 0,
                    "characters": text.generated if text else 0,
                    "translations": seq2seq.answered if seq2seq else 0,
                    "refused": dict(refused),
                },
            }
        )

    async def predict(request: Request) -> JSONResponse:
        model: DigitModel = need(digits, "digits")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in IMAGE_TYPES:
            raise _error(415, f"send the image as image/png or image/jpeg; got Content-Type {kind or 'none'!r}")
        image = await _body(request)
        if not image:
            raise _error(400, "the body is empty; send the image's bytes")
        try:
            return JSONResponse(await models.run(ANSWER, model.predict, image))
        except ValueError as error:
            raise _error(400, str(error)) from None

    async def generate(request: Request) -> Response:
        model: TextModel = need(text, "text")
        fields = {
            "prompt": (str,),
            "tokens": (int,),
            "temperature": (int, float),
            "top_k": (int, type(None)),
            "seed": (int, type(None)),
        }
        data = await _json(request, fields)
        prompt, tokens = data.get("prompt", "\n"), data.get("tokens", 300)
        temperature, top_k, seed = data.get("temperature", 1.0), data.get("top_k"), data.get("seed")
        if not prompt:
            raise _error(400, "prompt must not be empty")
        if not 1 <= tokens <= MAX_TOKENS:
            raise _error(400, f"tokens must be between 1 and {MAX_TOKENS}; got {tokens}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise _error(400, f"temperature must be positive; got {temperature}")
        if top_k is not None and top_k <= 0:
            raise _error(400, f"top_k must be positive or null; got {top_k}")
        if seed is not None and not 0 <= seed < 2**63:
            raise _error(400, f"seed must be between 0 and 2**63 - 1; got {seed}")
        try:
            sampled = model.stream(prompt, tokens, float(temperature), top_k, seed)
        except ValueError as error:
            raise _error(400, str(error)) from None

        async def characters() -> AsyncIterator[str]:  # one step per character; none once the reader left
            while (character := await models.run(STREAM, next, sampled, None)) is not None:
                yield character

        return StreamingResponse(characters(), media_type="text/plain; charset=utf-8")

    async def attention(request: Request) -> JSONResponse:
        model: TextModel = need(text, "text")
        data = await _json(request, {"text": (str,)})
        if not data.get("text"):
            raise _error(400, "text must be a non-empty string")
        try:
            return JSONResponse(await models.run(ANSWER, model.attention, data["text"]))
        except ValueError as error:
            raise _error(400, str(error)) from None

    async def translate(request: Request) -> JSONResponse:
        model: Seq2SeqModel = need(seq2seq, "seq2seq")
        data = await _json(request, {"text": (str,), "beam": (int,)})
        text, beam = data.get("text", ""), data.get("beam", 1)
        if not text:
            raise _error(400, "text must be a non-empty string")
        if not 1 <= beam <= MAX_BEAM:
            raise _error(400, f"beam must be between 1 and {MAX_BEAM}; got {beam}")
        try:
            return JSONResponse(await models.run(ANSWER, model.translate, text, beam))
        except ValueError as error:
            raise _error(400, str(error)) from None

    def lab_state() -> dict[str, Any]:
        available = lab_dir is not None and (lab_dir / "report.html").is_file()
        where = (lab_dir or Path("lab-report")).name  # the folder's name: never a path of the server's disk
        message = (
            f"the report in {where}/"
            if available
            else f"no lab report in {where}/: build it with `labformer lab all --out {where}`, then reload"
        )
        if not allow_build and not available:
            message += " (this server does not build it: start labformer serve with --allow-build for a button)"
        return {
            "available": available,
            "report": "/lab/report/report.html" if available else None,
            "message": message,
            "folder": where,
            "can_build": allow_build and lab_dir is not None,
            "building": building.locked(),
        }

    async def lab(request: Request) -> JSONResponse:
        return JSONResponse(lab_state())

    async def build_lab(request: Request) -> JSONResponse:
        if lab_dir is None:
            raise _error(404, "this server shows no lab report (start it with --lab DIR)")
        if not allow_build:
            raise _error(403, "this server does not build the lab report: start labformer serve with --allow-build")
        if building.locked():
            raise _error(409, "the lab report is being built already; reload the page when it is done")
        from labformer.lab.report import write_report  # matplotlib: only when a report is built

        async with building:  # its own thread: the models keep answering meanwhile
            await asyncio.to_thread(write_report, lab_dir)
        return JSONResponse(lab_state())

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    routes = [
        Route("/", _home),
        Route("/digits", _page("digits")),
        Route("/text", _page("text")),
        Route("/seq2seq", _page("seq2seq")),
        Route("/lab", _page("lab")),
        Route("/api/health", health),
        Route("/api/digits/predict", predict, methods=["POST"]),
        Route("/api/text/generate", generate, methods=["POST"]),
        Route("/api/text/attention", attention, methods=["POST"]),
        Route("/api/seq2seq/translate", translate, methods=["POST"]),
        Route("/api/lab", lab),
        Route("/api/lab/build", build_lab, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if lab_dir is not None:
        routes.append(Mount("/lab/report", StaticFiles(directory=lab_dir, check_dir=False), name="lab"))
    guard = Middleware(HostGuard, hosts=hosts or Hosts(), refused=refused)
    return Starlette(routes=routes, middleware=[guard], exception_handlers={HTTPException: http_error})
