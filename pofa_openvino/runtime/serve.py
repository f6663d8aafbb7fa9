"""``pofa-openvino serve``: a bundle behind the Open Inference Protocol (KServe v2) over HTTP, on
Starlette and uvicorn (the ``serve`` extra; nothing else in the package imports this module).
Requests are batched (and tokenized once per batch) by :mod:`.batching`; SIGTERM or Ctrl-C stops
accepting connections, finishes the requests in flight, and exits 0."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PofaError, UsageError
from .batching import DynamicBatcher, Overloaded
from .bundle import Bundle
from .oip import (
    BYTES,
    HEADER_LENGTH,
    VERSION,
    Limits,
    ProtocolError,
    Signature,
    error_body,
    infer_response,
    parse_infer,
)
from .tasks import get_task

log = logging.getLogger(__name__)
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


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
    """A bundle as a protocol model: batches each request's texts and shapes the outputs."""

    def __init__(self, path: str | Path, options: ServeOptions = ServeOptions(), name: str | None = None):
        properties = {"NUM_STREAMS": str(options.streams)} if options.streams else {}
        self.bundle = Bundle(path, properties=properties)
        self.name = name or self.bundle.manifest["name"]
        self.signature = Signature.of(self.bundle.manifest)
        self.options = options
        # The tokenizer and detokenizer run on their compiled models' one shared infer request each,
        # and the batcher's workers call them from several threads.
        self._shared = threading.Lock()
        self.batcher = DynamicBatcher(self.bundle.model.compiled, self.tokenize, self.finish, options.max_batch,
                                      options.max_delay_ms, options.max_queue)

    def tokenize(self, texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]:
        """A batch's token arrays, padded to its longest text (on a batcher thread)."""
        with self._shared:
            return self.bundle.tokens(texts, pairs)

    def finish(self, outputs: dict[str, np.ndarray], ids: np.ndarray) -> list[dict[str, Any]]:
        """Each row's outputs as the signature names them (on a batcher thread, once per batch)."""
        if get_task(self.bundle.task).extractive:
            with self._shared:
                answers = [self.bundle.answer(ids[i], outputs["start_logits"][i], outputs["end_logits"][i])
                           for i in range(len(ids))]
            return [{"answer": a["answer"], "score": a["score"]} for a in answers]
        logits = outputs["logits"]
        labels, probabilities = self.bundle.classify(logits)
        return [{"label": label, "scores": row, "logits": raw}
                for label, row, raw in zip(labels, probabilities, logits, strict=True)]

    def values(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray | list[str]]:
        """A request's rows as one tensor per output: strings as a list, numbers as FP32."""
        return {name: [row[name] for row in rows] if datatype == BYTES
                else np.array([row[name] for row in rows], np.float32)
                for name, datatype in self.signature.outputs.items()}


def create_app(served: ServedBundle) -> Any:
    """The ASGI application: infer requests go straight to :func:`infer`, past Starlette's routing,
    middleware and request objects (with one sentence per request, the event loop's work per request
    is what serving adds to inference); health, metadata and readiness go through Starlette."""
    from importlib.metadata import version

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def check_model(name: str, version: str | None = None) -> None:
        if name != served.name:
            raise ProtocolError(f"model {name!r} not found; this server has {served.name!r}", 404)
        if version not in (None, VERSION):
            raise ProtocolError(f"model {name!r} has no version {version!r}; it has version {VERSION}", 404)

    def failure(exc: Exception, method: str, path: str) -> tuple[int, str, dict[str, str]]:
        """The status, the one-line message and any extra headers for an exception."""
        if isinstance(exc, ProtocolError):
            return exc.status, str(exc), {}
        if isinstance(exc, Overloaded):
            return 503, str(exc), {}
        if isinstance(exc, HTTPException):
            return exc.status_code, exc.detail, dict(exc.headers or {})  # 405 keeps its Allow header
        log.error("%s %s failed: %s", method, path, exc)
        return 500, str(exc) if isinstance(exc, PofaError) else f"internal error ({type(exc).__name__})", {}

    async def infer(scope: dict[str, Any], receive: Any, send: Any, name: str, version: str | None) -> None:
        """``POST /v2/models/{name}[/versions/{version}]/infer`` as a bare ASGI handler."""
        headers = [(b"content-type", b"application/json")]
        try:
            if scope["method"] != "POST":
                raise HTTPException(405, headers={"Allow": "POST"})
            check_model(name, version)
            sent = dict(scope["headers"])
            body = await _read_body(receive, sent.get(b"content-length"), served.options.limits.max_request_bytes)
            header = sent.get(HEADER_LENGTH.lower().encode())
            parsed = parse_infer(body, header.decode("latin-1") if header is not None else None, served.signature,
                                 served.options.limits)
            rows = await _unless_disconnected(receive, served.batcher.submit(parsed.texts, parsed.pairs))
            try:
                content, header_length = infer_response(served.name, parsed, served.values(rows))
            except ValueError:
                raise PofaError("the model's outputs are not finite (NaN or infinity); "
                                "`pofa-openvino verify` on the bundle says more") from None
            status = 200
            if header_length is not None:
                headers = [(b"content-type", b"application/octet-stream"),
                           (HEADER_LENGTH.encode(), str(header_length).encode())]
        except Exception as exc:  # noqa: BLE001  (every failure is the protocol's error body)
            status, message, extra = failure(exc, scope["method"], scope["path"])
            content = error_body(message)
            headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})

    def error(message: str, status: int) -> Response:
        return Response(error_body(message), status, media_type="application/json")

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def server_ready(request: Request) -> Response:
        return JSONResponse({"ready": served.batcher.running}, 200 if served.batcher.running else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "pofa-openvino", "version": version("pofa-openvino"),
                             "extensions": ["binary_tensor_data"]})

    async def model_metadata(request: Request) -> Response:
        check_model(**request.path_params)
        return JSONResponse(served.signature.metadata(served.name))

    async def model_ready(request: Request) -> Response:
        check_model(**request.path_params)
        ready = served.batcher.running
        return JSONResponse({"name": served.name, "ready": ready}, 200 if ready else 503)

    async def protocol_error(request: Request, exc: Exception) -> Response:
        status, message, headers = failure(exc, request.method, request.url.path)
        answer = error(message, status)
        answer.headers.update(headers)
        return answer

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
        routes += [Route(prefix, model_metadata), Route(prefix + "/ready", model_ready)]
    handlers = {ProtocolError: protocol_error, Overloaded: protocol_error, PofaError: protocol_error,
                HTTPException: protocol_error, Exception: protocol_error}
    rest = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        match = INFER_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match:
            await infer(scope, receive, send, *match.groups())
        else:
            await rest(scope, receive, send)

    return app


async def _unless_disconnected(receive: Any, work: asyncio.Future) -> Any:
    """``work``'s result; if the client disconnects first, ``work`` is cancelled, so its texts leave
    the queue uncomputed (499, which nobody reads). After the body, the next ASGI message is
    ``http.disconnect``, sent only when the client goes away."""
    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        work.cancel()

    watcher = asyncio.ensure_future(gone())
    try:
        return await work
    except asyncio.CancelledError:
        if watcher.done():
            raise ProtocolError("the client disconnected before its answer", 499) from None
        raise
    finally:
        watcher.cancel()


async def _read_body(receive: Any, declared: bytes | None, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes, before it is all read."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(f"request body of {int(declared):,} bytes; the limit is {limit:,}", 413)
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ProtocolError("the client disconnected before sending its request", 499)
        chunk, more = message.get("body", b""), message.get("more_body", False)
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
