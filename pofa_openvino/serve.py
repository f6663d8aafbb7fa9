"""``pofa-openvino serve``: a bundle behind the Open Inference Protocol (KServe v2) over HTTP, on
Starlette and uvicorn (the ``serve`` extra; nothing else in the package imports this module).
Requests are batched (and tokenized once per batch) by :mod:`.batching`; SIGTERM or Ctrl-C stops
accepting connections, finishes the requests in flight, and exits 0."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .batching import DynamicBatcher, Overloaded
from .bundle import Bundle
from .errors import PofaError, UsageError
from .oip import HEADER_LENGTH, Limits, ProtocolError, Signature, error_body, infer_response, parse_infer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """How the server batches and what it admits (the ``serve`` command's options)."""

    max_batch: int = 32
    max_delay_ms: float = 2.0
    max_queue: int = 256
    streams: int | None = None  # CPU streams (NUM_STREAMS); None: OpenVINO's choice for the bundle's config
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 <= self.max_delay_ms <= 1000:
            raise UsageError("--max-delay-ms must be between 0 and 1000")
        if self.streams is not None and self.streams < 1:
            raise UsageError("--streams must be at least 1")
        for name in ("max_request_bytes", "max_texts", "max_text_chars"):
            if getattr(self.limits, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_queue < self.limits.max_texts:
            raise UsageError(f"--max-queue ({self.max_queue}) must be at least --max-texts ({self.limits.max_texts}): "
                             "a request of --max-texts texts could never be admitted")


class ServedBundle:
    """A bundle as a protocol model: tokenizes each request, batches it, and shapes the outputs."""

    def __init__(self, path: str | Path, options: ServeOptions = ServeOptions(), name: str | None = None):
        properties = {"NUM_STREAMS": str(options.streams)} if options.streams else {}
        self.bundle = Bundle(path, properties=properties)
        self.name = name or self.bundle.manifest["name"]
        self.signature = Signature.of(self.bundle.manifest)
        self.options = options
        self.batcher = DynamicBatcher(self.bundle.model.compiled, self.tokenize, self.bundle.pad_token_id,
                                      options.max_batch, options.max_delay_ms, options.max_queue)

    def tokenize(self, texts: list[str], pairs: list[str] | None) -> list[dict[str, np.ndarray]]:
        """Each text's token arrays, unpadded (the tokenizer pads a call to its longest text); the
        batcher calls it once per batch, on its tokenizer thread."""
        tokens = self.bundle.tokens(texts, pairs)
        lengths = tokens["attention_mask"].sum(axis=1)
        names = [n for n in self.batcher.names if n in tokens]
        return [{n: tokens[n][row, :length] for n in names} for row, length in enumerate(lengths)]

    async def infer(self, texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray | list[str]]:
        """Every output of the signature for a request's texts."""
        rows = await self.batcher.infer(texts, pairs)
        if self.bundle.task == "question-answering":
            answers = [self.bundle.answer(ids, out["start_logits"], out["end_logits"]) for out, ids in rows]
            return {"answer": [a["answer"] for a in answers],
                    "score": np.array([a["score"] for a in answers], np.float32)}
        logits = np.stack([out["logits"] for out, _ in rows])
        labels, probabilities = self.bundle.classify(logits)
        return {"label": labels, "scores": probabilities.astype(np.float32), "logits": logits.astype(np.float32)}


def create_app(served: ServedBundle) -> Any:
    """The Starlette application: health, server and model metadata, readiness, infer."""
    from importlib.metadata import version

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def error(message: str, status: int) -> Response:
        return Response(error_body(message), status, media_type="application/json")

    def model_or_404(request: Request) -> None:
        name, wanted = request.path_params["name"], request.path_params.get("version")
        if name != served.name:
            raise ProtocolError(f"model {name!r} not found; this server has {served.name!r}", 404)
        if wanted not in (None, "1"):
            raise ProtocolError(f"model {name!r} has no version {wanted!r}; it has version 1", 404)

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def server_ready(request: Request) -> Response:
        return JSONResponse({"ready": served.batcher.running}, 200 if served.batcher.running else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "pofa-openvino", "version": version("pofa-openvino"),
                             "extensions": ["binary_tensor_data"]})

    async def model_metadata(request: Request) -> Response:
        model_or_404(request)
        return JSONResponse(served.signature.metadata(served.name))

    async def model_ready(request: Request) -> Response:
        model_or_404(request)
        ready = served.batcher.running
        return JSONResponse({"name": served.name, "ready": ready}, 200 if ready else 503)

    async def infer(request: Request) -> Response:
        model_or_404(request)
        body = await _read_body(request, served.options.limits.max_request_bytes)
        parsed = parse_infer(body, request.headers.get(HEADER_LENGTH), served.signature, served.options.limits)
        values = await _unless_disconnected(request, served.infer(parsed.texts, parsed.pairs))
        try:
            content, header_length = infer_response(served.name, parsed, values)
        except ValueError:
            raise PofaError("the model's outputs are not finite (NaN or infinity); "
                            "`pofa-openvino verify` on the bundle says more") from None
        headers = {HEADER_LENGTH: str(header_length)} if header_length is not None else None
        media = "application/octet-stream" if header_length is not None else "application/json"
        return Response(content, 200, headers=headers, media_type=media)

    async def protocol_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ProtocolError):
            return error(str(exc), exc.status)
        if isinstance(exc, Overloaded):
            return error(str(exc), 503)
        if isinstance(exc, HTTPException):
            answer = error(exc.detail, exc.status_code)
            answer.headers.update(exc.headers or {})  # 405 keeps its Allow header
            return answer
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error(str(exc) if isinstance(exc, PofaError) else f"internal error ({type(exc).__name__})", 500)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        served.batcher.start()
        yield
        await served.batcher.close()
        stats = served.batcher.stats
        if stats["batches"]:
            log.info("served %d sequences in %d batches (mean batch %.1f, %.0f%% of computed tokens were padding)",
                     stats["sequences"], stats["batches"], stats["sequences"] / stats["batches"],
                     100 * (1 - stats["tokens"] / max(stats["padded_tokens"], 1)))

    model = "/v2/models/{name}"
    versioned = model + "/versions/{version}"
    routes = [Route("/v2", server_metadata), Route("/v2/health/live", live), Route("/v2/health/ready", server_ready)]
    for prefix in (model, versioned):
        routes += [Route(prefix, model_metadata), Route(prefix + "/ready", model_ready),
                   Route(prefix + "/infer", infer, methods=["POST"])]
    handlers = {ProtocolError: protocol_error, Overloaded: protocol_error, PofaError: protocol_error,
                HTTPException: protocol_error, Exception: protocol_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


async def _unless_disconnected(request: Any, work: Any) -> Any:
    """``work``'s result; if the client disconnects first, ``work`` is cancelled, so its texts leave
    the queue uncomputed (499, which nobody reads). Starlette does not watch for a disconnect itself:
    after the body, the next ASGI message is ``http.disconnect``, sent only when the client goes away."""
    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ProtocolError("the client disconnected before its answer", 499)
    return task.result()


async def _read_body(request: Any, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes, before it is all read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(f"request body of {int(declared):,} bytes; the limit is {limit:,}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(f"request body over the limit of {limit:,} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, options: ServeOptions = ServeOptions(),
          name: str | None = None, graceful_timeout_s: float = 30.0, access_log: bool = False) -> None:
    """Serve a bundle until SIGTERM or Ctrl-C; in-flight requests finish first (up to the timeout)."""
    try:
        import uvicorn
    except ImportError:
        raise UsageError("serving needs the `serve` extra: pip install 'pofa-openvino[serve]'") from None
    served = ServedBundle(path, options, name)
    runtime = served.bundle.model.describe()
    log.info("runtime: %s, AMX %s; %s", runtime["cpu"], "yes" if runtime["amx"] else "no", runtime["note"])
    log.info("serving %s on http://%s:%d (Open Inference Protocol v2): POST /v2/models/%s/infer; %d infer "
             "requests, batches up to %d within %g ms", served.name, host, port, served.name, served.batcher.jobs,
             options.max_batch, options.max_delay_ms)
    config = uvicorn.Config(create_app(served), host=host, port=port, access_log=access_log, log_config=None,
                            timeout_graceful_shutdown=graceful_timeout_s, limit_concurrency=None)
    server = uvicorn.Server(config)
    stopped: list[int] = []
    # uvicorn re-raises the signal that stopped it once it has shut down; these handlers take it, so a
    # graceful stop ends the command normally instead of as a kill or a KeyboardInterrupt.
    previous = {sig: signal.signal(sig, lambda number, frame: stopped.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    except SystemExit:  # uvicorn's answer to a socket it cannot bind (it has logged the reason)
        raise PofaError(f"could not listen on {host}:{port} (in use, or not an address of this machine)") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped%s after finishing the requests in flight",
             f" on {signal.Signals(stopped[0]).name}" if stopped else "")
