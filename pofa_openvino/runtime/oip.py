"""The Open Inference Protocol (KServe v2, what OVMS, Triton and KServe speak) for a bundle: request
bodies in, response bodies out, in JSON or with the binary tensor data extension (tritonclient's
default). Text models only: ``BYTES`` inputs of raw strings; ``label``, ``scores`` and ``logits`` out
(``answer`` and ``score`` for question answering). No web framework here: :mod:`.serve` carries
these bodies over HTTP, and every problem is a :class:`ProtocolError` with its HTTP status."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import PofaError
from .tasks import get_task

HEADER_LENGTH = "Inference-Header-Content-Length"  # the binary extension's header: JSON bytes before tensors
VERSION = "1"
BYTES, FP32 = "BYTES", "FP32"


class ProtocolError(PofaError):
    """A request the protocol or the limits refuse; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may carry; beyond it the answer is 400 (or 413 for the body size)."""

    max_request_bytes: int = 1 << 20
    max_texts: int = 64
    max_text_chars: int = 10_000


@dataclass(frozen=True)
class Signature:
    """A bundle's inputs and outputs as the protocol names them."""

    inputs: tuple[str, ...]
    outputs: dict[str, str]  # name -> datatype
    classes: int = 0

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> Signature:
        if get_task(manifest["task"]).extractive:
            return cls(("question", "context"), {"answer": BYTES, "score": FP32})
        inputs = ("text", "text_pair") if manifest["text_inputs"] == 2 else ("text",)
        return cls(inputs, {"label": BYTES, "scores": FP32, "logits": FP32}, len(manifest["labels"]))

    def metadata(self, name: str) -> dict[str, Any]:
        """``GET /v2/models/{name}``: names, datatypes and shapes (-1: any batch)."""
        def shape(output: str) -> list[int]:
            return [-1, self.classes] if output in ("scores", "logits") else [-1]

        return {"name": name, "versions": [VERSION], "platform": "openvino",
                "inputs": [{"name": n, "datatype": BYTES, "shape": [-1]} for n in self.inputs],
                "outputs": [{"name": n, "datatype": t, "shape": shape(n)} for n, t in self.outputs.items()]}


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: the texts (and their second texts), and which outputs to send how."""

    id: str | None
    texts: list[str]
    pairs: list[str] | None
    outputs: tuple[str, ...]
    binary: frozenset[str] = field(default_factory=frozenset)


def parse_infer(body: bytes, header_length: str | None, signature: Signature, limits: Limits) -> InferRequest:
    """An infer request body (JSON, or JSON then binary tensors) checked against the signature and limits."""
    if len(body) > limits.max_request_bytes:
        raise ProtocolError(f"request body of {len(body):,} bytes; the limit is {limits.max_request_bytes:,}", 413)
    split = _header_length(header_length, len(body))
    try:
        request = json.loads(body[:split])
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"request body is not JSON ({str(exc)[:80]})") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise ProtocolError("request body needs an `inputs` list (Open Inference Protocol infer request)")
    inputs, binary, offset = {}, body[split:], 0
    for number, tensor in enumerate(request["inputs"]):
        if not isinstance(tensor, dict) or tensor.get("name") not in signature.inputs:
            got = tensor.get("name") if isinstance(tensor, dict) else tensor
            raise ProtocolError(f"inputs[{number}]: {got!r} is not an input of this model; it takes "
                                f"{', '.join(signature.inputs)}")
        if tensor["name"] in inputs:
            raise ProtocolError(f"input {tensor['name']!r} given twice")
        inputs[tensor["name"]], offset = _texts(tensor, binary, offset, limits)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data after the last tensor's")
    missing = [name for name in signature.inputs if name not in inputs]
    if missing:
        raise ProtocolError(f"missing input {', '.join(map(repr, missing))}; this model takes "
                            f"{', '.join(signature.inputs)}")
    texts, pairs = inputs[signature.inputs[0]], inputs.get(signature.inputs[-1]) if len(signature.inputs) > 1 else None
    if pairs is not None and len(pairs) != len(texts):
        raise ProtocolError(f"{signature.inputs[0]!r} has {len(texts)} texts and {signature.inputs[1]!r} "
                            f"{len(pairs)}: give one per text")
    outputs, wanted = _requested_outputs(request, signature)
    return InferRequest(_request_id(request), texts, pairs, outputs, wanted)


def _header_length(value: str | None, size: int) -> int:
    if value is None:
        return size
    try:
        length = int(value)
    except ValueError:
        length = -1
    if not 0 <= length <= size:
        raise ProtocolError(f"{HEADER_LENGTH}: {value!r} is not a length within the {size}-byte body")
    return length


def _texts(tensor: dict[str, Any], binary: bytes, offset: int, limits: Limits) -> tuple[list[str], int]:
    """One BYTES tensor's strings, from ``data`` or from the binary part at ``offset``."""
    name = tensor["name"]
    if tensor.get("datatype") != BYTES:
        raise ProtocolError(f"input {name!r}: datatype {tensor.get('datatype')!r}; text inputs are BYTES")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and shape and all(type(d) is int and d >= 0 for d in shape)
            and all(d == 1 for d in shape[1:])):
        raise ProtocolError(f"input {name!r}: shape {shape!r}; give [N] (or [N, 1]) for N texts")
    size = _parameters(tensor, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if type(size) is not int or not 0 <= size <= len(binary) - offset:
            raise ProtocolError(f"input {name!r}: binary_data_size {size!r} is not within the binary data")
        values, offset = _unpack_bytes(name, binary[offset:offset + size]), offset + size
    else:
        values = _flatten(tensor.get("data"))
        if values is None or not all(isinstance(v, str) for v in values):
            raise ProtocolError(f"input {name!r}: `data` must be a list of strings (or send binary data)")
    if len(values) != shape[0]:
        raise ProtocolError(f"input {name!r}: shape {shape} but {len(values)} strings")
    if not values:
        raise ProtocolError(f"input {name!r}: no text")
    if len(values) > limits.max_texts:
        raise ProtocolError(f"input {name!r}: {len(values)} texts; at most {limits.max_texts} per request")
    for number, value in enumerate(values):
        if len(value) > limits.max_text_chars:
            raise ProtocolError(f"input {name!r}: text {number} has {len(value):,} characters; the limit is "
                                f"{limits.max_text_chars:,}")
    return values, offset


def _flatten(data: Any) -> list[Any] | None:
    """``data`` flat, or nested one level as [[text], ...] (both are the protocol's)."""
    if not isinstance(data, list):
        return None
    return [row[0] if isinstance(row, list) and len(row) == 1 else row for row in data]


def _unpack_bytes(name: str, data: bytes) -> list[str]:
    """The binary extension's BYTES elements: a 4-byte little-endian length, then the bytes."""
    values, at = [], 0
    while at < len(data):
        if at + 4 > len(data):
            raise ProtocolError(f"input {name!r}: binary data cut short in element {len(values)}'s length")
        (length,) = struct.unpack_from("<I", data, at)
        if at + 4 + length > len(data):
            raise ProtocolError(f"input {name!r}: binary element {len(values)} runs past its tensor's data")
        try:
            values.append(data[at + 4:at + 4 + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError(f"input {name!r}: element {len(values)} is not UTF-8 text") from None
        at += 4 + length
    return values


def _requested_outputs(request: dict[str, Any], signature: Signature) -> tuple[tuple[str, ...], frozenset[str]]:
    """The outputs to send (all by default) and which of them as binary data."""
    every_binary = bool(_parameters(request, "the request").get("binary_data_output", False))
    asked = request.get("outputs")
    if asked is None:
        names = tuple(signature.outputs)
        return names, frozenset(names if every_binary else ())
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise ProtocolError("`outputs` must be a list of {\"name\": ...} objects")
    unknown = [o["name"] for o in asked if o["name"] not in signature.outputs]
    if unknown:
        raise ProtocolError(f"output {unknown[0]!r} is not an output of this model; it has "
                            f"{', '.join(signature.outputs)}")
    binary = {o["name"] for o in asked if _parameters(o, f"output {o['name']!r}").get("binary_data", every_binary)}
    return tuple(dict.fromkeys(o["name"] for o in asked)), frozenset(binary)


def _parameters(where: dict[str, Any], what: str) -> dict[str, Any]:
    """An object's ``parameters`` (the protocol's extension point): an object, or absent."""
    parameters = where.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f"{what}: `parameters` must be an object, not {type(parameters).__name__}")
    return parameters


def _request_id(request: dict[str, Any]) -> str | None:
    value = request.get("id")
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"`id` must be a string, not {type(value).__name__}")
    return value


def infer_response(model: str, request: InferRequest,
                   values: dict[str, np.ndarray | list[str]]) -> tuple[bytes, int | None]:
    """The response body for the requested outputs, and the JSON header's length when binary tensors
    follow it (the value of :data:`HEADER_LENGTH`). Raises ``ValueError`` on a non-finite output, in
    either form: the protocol's JSON has no NaN, and a client reading binary scores should not get one."""
    outputs, tail = [], []
    for name in request.outputs:
        value = values[name]
        if not isinstance(value, list) and not np.isfinite(value).all():
            raise ValueError(f"output {name!r} is not finite")
        datatype = BYTES if isinstance(value, list) else FP32
        shape = [len(value)] if isinstance(value, list) else list(value.shape)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if name in request.binary:
            data = (b"".join(struct.pack("<I", len(e)) + e for e in (v.encode("utf-8") for v in value))
                    if isinstance(value, list) else np.ascontiguousarray(value, "<f4").tobytes())
            tensor["parameters"] = {"binary_data_size": len(data)}
            tail.append(data)
        else:
            tensor["data"] = value if isinstance(value, list) else value.astype(np.float32).ravel().tolist()
        outputs.append(tensor)
    header = {"model_name": model, "model_version": VERSION, "outputs": outputs}
    if request.id is not None:
        header["id"] = request.id
    body = json.dumps(header, allow_nan=False).encode()
    return (body + b"".join(tail), len(body)) if tail else (body, None)


def error_body(message: str) -> bytes:
    """The protocol's error object: ``{"error": "..."}``."""
    return json.dumps({"error": message}).encode()
