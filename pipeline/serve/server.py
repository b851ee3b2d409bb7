"""`serve`: Clarifai's PostModelOutputs over gRPC, answered by the embedded model.

Clarifai's own clients (any language) work against it unchanged, so the `clarifai` backend's
tests run the real wire path. For testing clients it can inject faults, add latency and log
every request as one JSON line."""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, TypeVar

import grpc
import numpy as np
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2 as codes
from clarifai_grpc.grpc.api.status import status_pb2

from pipeline.backends import models
from pipeline.errors import BackendError, ClientGoneError
from pipeline.serve import catalog, fetch, images, keyrate, memory
from pipeline.serve import inputs as serve_inputs
from pipeline.serve.caller import InFlight, RequestCaller, stop_if_gone
from pipeline.serve.catalog import NotServed, status
from pipeline.serve.faults import FAULTS, Fault, Faults, fault_response
from pipeline.serve.inputs import InputLimits

log = logging.getLogger(__name__)

# Answers are small (scores); the limit on requests is ServeConfig.max_request_bytes.
MAX_MESSAGE = 512 * 1024 * 1024
DEFAULT_SAMPLE_MS = 1000
MAX_INPUTS = 128  # Clarifai's inputs a request (its SDKs' MAX_MODEL_PREDICT_INPUTS)
_ABANDONED = 1.0  # seconds an abandoned request has to reach its next check
_LARGE = 8_000_000  # bytes of inputs after which serve gives memory back (`memory`)


class _Answer(Protocol):
    """A V2 response message: every one carries a status (a protobuf message: untyped)."""

    status: Any


Request = TypeVar("Request")
Response = TypeVar("Response", bound=_Answer)


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    api_key: str | None = field(default=None, repr=False)
    limits: InputLimits = InputLimits()
    fault_rate: float = 0.0
    fault_seed: int = 0
    faults: tuple[Fault, ...] = FAULTS  # drawn from, uniformly
    fault_at: frozenset[int] = frozenset()  # these requests (1 = the first to arrive) fail
    latency_ms: int = 0
    request_log: str | None = None
    workers: int = 8
    # Clarifai's newer docs allow 128 MB of bytes input; gRPC refuses a larger message before
    # it is decoded (a request costs serve about three times its size while it is decoded).
    max_request_bytes: int = 128_000_000
    key_rate_limit: int | None = None  # requests per key in any second (keyrate); None: any

    @property
    def download_slots(self) -> int:
        """URL downloads at once: half the workers (at least one), so that URLs that drip can
        never hold every worker."""
        return max(1, self.workers // 2)


class _RequestLog:
    """One JSON line per request, flushed as written (readers tail it while the server runs)."""

    def __init__(self, path: str | None) -> None:
        self._fh: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if self._fh is None:  # no log, or closed (a request abandoned when stopping)
                return
            self._fh.write(json.dumps(entry) + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


# The base class is Any to mypy (clarifai_grpc ships no types): subclassing it is `misc`.
class Servicer(service_pb2_grpc.V2Servicer):  # type: ignore[misc]
    """PostModelOutputs, and the model information Clarifai's SDKs read before predicting
    (`catalog`); every other V2 method stays UNIMPLEMENTED."""

    def __init__(self, config: ServeConfig, stopping: threading.Event) -> None:
        self.config = config
        self._faults = Faults(config.fault_rate, config.fault_seed, config.faults,
                               config.fault_at)
        self.log = _RequestLog(config.request_log)
        self._stopping = stopping
        self.abandon = threading.Event()  # requests still in flight stop at their next check
        self.in_flight = InFlight()
        self._downloads = fetch.Slots(config.download_slots)
        self._decodes = images.DecodeBudget(config.limits.max_image_pixels)
        self.janitor = memory.Janitor()

    def PostModelOutputs(self, request: service_pb2.PostModelOutputsRequest,  # noqa: N802
                         context: grpc.ServicerContext) -> service_pb2.MultiOutputResponse:
        entry: dict[str, Any] = {
            "time": round(keyrate.arrival() or time.time(), 6), "method": "PostModelOutputs",
            "model": request.model_id,
            "kind": _kinds(request.inputs), "inputs": len(request.inputs),
            "size_bytes": sum(_size(i) for i in request.inputs), "fault": None,
            "billed_frames": 0, "throttled": False}
        try:
            with self.in_flight:
                return self._respond(request, context, entry)
        finally:
            if entry["size_bytes"] >= _LARGE or "-url" in entry["kind"]:
                self.janitor.after_large_request()

    def _respond(self, request: service_pb2.PostModelOutputsRequest,
                 context: grpc.ServicerContext, entry: dict[str, Any],
                 ) -> service_pb2.MultiOutputResponse:
        arrived = time.monotonic()
        call = RequestCaller(context, self.abandon)
        try:
            answer = self._answer(request, context, call, entry)
        except ClientGoneError:
            return self._gone(context, call, entry)
        self._delay(context, until=arrived + self.config.latency_ms / 1000)
        entry["seconds"] = round(time.time() - entry["time"], 6)
        if isinstance(answer, Fault):
            entry["status"] = answer.label
            self.log.write(entry)
            context.abort(answer.code, "injected fault: service unavailable")
            return service_pb2.MultiOutputResponse()  # not reached: abort raises
        entry["status"] = int(answer.status.code)
        self.log.write(entry)
        return answer

    def _gone(self, context: grpc.ServicerContext, call: RequestCaller,
              entry: dict[str, Any]) -> service_pb2.MultiOutputResponse:
        """Nothing more is answered to a client that has gone (gRPC has answered it); a request
        abandoned by a stopping server is answered UNAVAILABLE, which clients retry."""
        entry["status"] = call.outcome()
        entry["seconds"] = round(time.time() - entry["time"], 6)
        self.log.write(entry)
        if entry["status"] == "grpc:UNAVAILABLE":
            context.abort(grpc.StatusCode.UNAVAILABLE, "the server is stopping")
        return service_pb2.MultiOutputResponse()

    # -- model information, read by Clarifai's SDKs before they predict (`catalog`) ----------
    def GetModel(self, request: service_pb2.GetModelRequest,  # noqa: N802
                 context: grpc.ServicerContext) -> service_pb2.SingleModelResponse:
        return self._lookup(request, context, catalog.get_model,
                            service_pb2.SingleModelResponse)

    def GetModelVersion(self, request: service_pb2.GetModelVersionRequest,  # noqa: N802
                        context: grpc.ServicerContext) -> service_pb2.SingleModelVersionResponse:
        return self._lookup(request, context, catalog.get_model_version,
                            service_pb2.SingleModelVersionResponse)

    def ListModelVersions(self, request: service_pb2.ListModelVersionsRequest,  # noqa: N802
                          context: grpc.ServicerContext,
                          ) -> service_pb2.MultiModelVersionResponse:
        return self._lookup(request, context, catalog.list_model_versions,
                            service_pb2.MultiModelVersionResponse)

    def GetModelType(self, request: service_pb2.GetModelTypeRequest,  # noqa: N802
                     context: grpc.ServicerContext) -> service_pb2.SingleModelTypeResponse:
        return self._lookup(request, context, catalog.get_model_type,
                            service_pb2.SingleModelTypeResponse)

    def ListModels(self, request: service_pb2.ListModelsRequest,  # noqa: N802
                   context: grpc.ServicerContext) -> service_pb2.MultiModelResponse:
        return self._lookup(request, context, catalog.list_models,
                            service_pb2.MultiModelResponse)

    def ListModelConcepts(self, request: service_pb2.ListModelConceptsRequest,  # noqa: N802
                          context: grpc.ServicerContext) -> service_pb2.MultiConceptResponse:
        return self._lookup(request, context, catalog.list_model_concepts,
                            service_pb2.MultiConceptResponse)

    def ListConcepts(self, request: service_pb2.ListConceptsRequest,  # noqa: N802
                     context: grpc.ServicerContext) -> service_pb2.MultiConceptResponse:
        return self._lookup(request, context, catalog.list_concepts,
                            service_pb2.MultiConceptResponse)

    def _lookup(self, request: Request, context: grpc.ServicerContext,
                answer: Callable[[Request], Response], empty: Callable[..., Response],
                ) -> Response:
        """The key check, the catalog's answer, one request-log line. Faults and latency stay
        with PostModelOutputs: they stand for the model's work."""
        began = keyrate.arrival() or time.time()
        refused = self._check_key(context)
        response: Response
        try:
            with self.in_flight:
                response = empty(status=refused) if refused is not None else answer(request)
        except NotServed as exc:
            response = empty(status=exc.status)
        self.log.write({
            "time": round(began, 6), "method": type(request).__name__.removesuffix("Request"),
            "model": getattr(request, "model_id", ""), "kind": "none", "size_bytes": 0,
            "fault": None, "status": int(response.status.code),
            "seconds": round(time.time() - began, 6), "throttled": False})
        return response

    def log_throttle(self, method: str, request: Any, arrived: float) -> None:
        """The log line of a request answered CONN_THROTTLED by --key-rate-limit."""
        inputs = list(getattr(request, "inputs", ()))
        self.log.write({
            "time": round(arrived, 6), "method": method,
            "model": getattr(request, "model_id", ""), "kind": _kinds(inputs),
            "inputs": len(inputs), "size_bytes": sum(_size(i) for i in inputs), "fault": None,
            "throttled": True, "status": int(codes.CONN_THROTTLED),
            "seconds": round(time.time() - arrived, 6)})

    def _answer(self, request: service_pb2.PostModelOutputsRequest,
                context: grpc.ServicerContext, call: RequestCaller, entry: dict[str, Any],
                ) -> service_pb2.MultiOutputResponse | Fault:
        refused = self._check_key(context)
        if refused is not None:
            return service_pb2.MultiOutputResponse(status=refused)
        if any("_method_name" in i.data.metadata.fields for i in request.inputs):
            return _no_signatures()
        if len(request.inputs) > MAX_INPUTS:
            return _too_many(len(request.inputs))
        fault = self._faults.draw()
        if fault is not None:
            entry["fault"] = fault.label
            return fault if isinstance(fault.code, grpc.StatusCode) else fault_response(fault)
        try:
            model = catalog.find(request.model_id)
        except NotServed as exc:
            return service_pb2.MultiOutputResponse(status=exc.status)
        sample_ms = _sample_ms(request)
        if not 100 <= sample_ms <= 60_000:
            return service_pb2.MultiOutputResponse(status=status(
                codes.MODEL_INVALID_ARGUMENT, f"sample_ms must be 100..60000, not {sample_ms}"))
        claim = self._downloads.claim(sum(serve_inputs.is_url(i) for i in request.inputs))
        if claim is None:
            return _busy(self._downloads.slots)
        try:
            outputs = self._outputs(request.inputs, model, sample_ms, call, claim)
        finally:
            claim.release()
        entry["billed_frames"] = _billed(outputs)
        return service_pb2.MultiOutputResponse(status=_overall(outputs), outputs=outputs)

    def _check_key(self, context: grpc.ServicerContext) -> status_pb2.Status | None:
        if not self.config.api_key:
            return None
        sent = dict(context.invocation_metadata()).get("authorization", "")
        if not sent:
            return status(codes.CONN_KEY_NOT_FOUND, "API key not found: send metadata "
                           "'authorization: Key <KEY>'")
        if not hmac.compare_digest(str(sent).encode(), f"Key {self.config.api_key}".encode()):
            return status(codes.CONN_KEY_INVALID, "Invalid API key or Invalid API key/"
                           "application pair")
        return None

    def _delay(self, context: grpc.ServicerContext, until: float) -> None:
        """--latency-ms is the least time an answer takes, our own work included (as Clarifai's
        latency includes its work); cut short if the client goes away or the server stops."""
        while (left := until - time.monotonic()) > 0 and context.is_active():
            if self._stopping.wait(min(left, 0.05)):
                return

    def _outputs(self, items: Sequence[resources_pb2.Input], model: models.EmbeddedModel,
                 sample_ms: int, call: RequestCaller, claim: fetch.Claim,
                 ) -> list[resources_pb2.Output]:
        """One output per input, in order, as Clarifai answers; the request's images are
        scored together (a batch of 128 frames is one pass of the model, not 128)."""
        outputs: list[resources_pb2.Output] = []
        stills: list[tuple[resources_pb2.Output, np.ndarray]] = []
        for item in items:
            stop_if_gone(call)
            out = resources_pb2.Output(id=f"out-{time.time_ns():x}", input=resources_pb2.Input(
                id=item.id), model=resources_pb2.Model(id=model.id, name=model.name,
                                                       model_version=resources_pb2.ModelVersion(
                                                           id=model.version_id)))
            try:
                image = self._predict(item, model, sample_ms, out, call, claim)
            except BackendError as exc:
                out.status.CopyFrom(status(serve_inputs.check(exc), str(exc)))
            else:
                out.status.CopyFrom(status(codes.SUCCESS, "Ok"))
                if image is not None:
                    stills.append((out, image))
            outputs.append(out)
        for (out, _), found in zip(stills, serve_inputs.predict_images(
                [image for _, image in stills], model, call), strict=True):
            out.data.concepts.extend(found)
        return outputs

    def _predict(self, item: resources_pb2.Input, model: models.EmbeddedModel, sample_ms: int,
                 out: resources_pb2.Output, call: RequestCaller, claim: fetch.Claim,
                 ) -> np.ndarray | None:
        """A video's frames into `out`; an image's pixels, to be scored with the others."""
        limits = self.config.limits
        try:
            data = serve_inputs.payload(item, limits, call)
        finally:
            if serve_inputs.is_url(item):
                claim.downloaded()
        if item.data.HasField("video"):
            serve_inputs.check_takes_video(model)
            out.data.frames.extend(serve_inputs.predict_video(
                data, model, sample_ms, limits, call))
            return None
        return images.image_frame(data, limits.max_image_pixels, self._decodes, call)


def _kinds(items: Sequence[resources_pb2.Input]) -> str:
    """Each input's kind, a run of the same kind counted: `image-bytes*128`, or `none`."""
    runs = [(k, len(list(g))) for k, g in itertools.groupby(serve_inputs.kind(i) for i in items)]
    return ",".join(k if n == 1 else f"{k}*{n}" for k, n in runs) or "none"


def _billed(outputs: Sequence[resources_pb2.Output]) -> int:
    """The frames Clarifai bills for these outputs: each frame a video input was sampled at,
    each image scored; an input that failed bills nothing."""
    return sum(len(o.data.frames) or 1 for o in outputs if o.status.code == codes.SUCCESS)


def _size(item: resources_pb2.Input) -> int:
    data = item.data
    return len(data.video.base64) + len(data.image.base64)


def _no_signatures() -> service_pb2.MultiOutputResponse:
    """The SDK's Model, asked for an attribute it lacks (a typo, `hasattr`), probes for Python
    method signatures with an input carrying `_method_name`. INPUT_UNSUPPORTED_FORMAT is what
    it expects from a model that has none: it then raises its own clear message after this one
    request (any other answer costs a second request and a confusing error)."""
    return service_pb2.MultiOutputResponse(status=status(
        codes.INPUT_UNSUPPORTED_FORMAT, "this model has no method signatures (not a Python "
        "model): use predict_by_bytes, predict_by_url or predict(inputs=[...])"))


def _busy(slots: int) -> service_pb2.MultiOutputResponse:
    return service_pb2.MultiOutputResponse(status=status(
        codes.RPC_REQUEST_QUEUE_FULL, f"serve is downloading as many URLs as it allows at once "
        f"({slots}); retry shortly"))


def _too_many(inputs: int) -> service_pb2.MultiOutputResponse:
    """Clarifai documents the limit but no code for it: PREDICT_INVALID_REQUEST is a request
    that cannot be served as sent (clients fail it, unretried)."""
    return service_pb2.MultiOutputResponse(status=status(
        codes.PREDICT_INVALID_REQUEST, f"the request has {inputs} inputs; the limit is "
        f"{MAX_INPUTS} a request"))


def _sample_ms(request: service_pb2.PostModelOutputsRequest) -> int:
    """Either place clients put it: model.output_info or model.model_version.output_info."""
    for info in (request.model.model_version.output_info, request.model.output_info):
        if info.output_config.sample_ms:
            return int(info.output_config.sample_ms)
    return DEFAULT_SAMPLE_MS


def _overall(outputs: list[resources_pb2.Output]) -> status_pb2.Status:
    """One input: its own status (so clients checking only the top see it); several: mixed."""
    if len(outputs) == 1:
        return outputs[0].status
    ok = sum(1 for o in outputs if o.status.code == codes.SUCCESS)
    if ok == len(outputs):
        return status(codes.SUCCESS, "Ok")
    return status(codes.MIXED_STATUS if ok else codes.FAILURE)


class Server:
    """The gRPC server, usable in process (`start()` returns the bound port) or from the CLI."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self._stopping = threading.Event()
        self.servicer = Servicer(config, self._stopping)
        limit = config.key_rate_limit
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=config.workers + (keyrate.SPARE if limit else 0),
                               thread_name_prefix="serve"),
            interceptors=[keyrate.KeyRateLimit(limit, config.workers,
                                               self.servicer.log_throttle)] if limit else None,
            # SO_REUSEPORT is gRPC's default: a second server on a busy port would start and
            # split the connections with the first. One server a port.
            options=[("grpc.max_receive_message_length", config.max_request_bytes),
                     ("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.so_reuseport", 0)])
        service_pb2_grpc.add_V2Servicer_to_server(self.servicer, self._server)
        self.port = 0

    def start(self) -> int:
        """Bind (port 0 picks a free one) and serve; return the bound port."""
        address = f"{self.config.host}:{self.config.port}"
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError:  # grpc raises this when the port is taken, or answers 0
            self.port = 0
        if not self.port:
            raise OSError(f"cannot listen on {address}: in use, or not an address of this "
                          "machine")
        self._server.start()
        log.info("serving clarifai.api.V2 (PostModelOutputs, model information) on %s:%d",
                 self.config.host, self.port)
        return self.port

    def stop(self, grace: float = 5.0) -> bool:
        """Refuse new requests and give those in flight `grace` s to finish; then abandon the
        rest (each stops at its next check and is answered UNAVAILABLE) and close the log.
        False if some request was still running a second after that (stuck where no check
        reaches, such as a DNS lookup)."""
        self._stopping.set()
        stopped = self._server.stop(grace + _ABANDONED)  # gRPC cancels what we could not end
        finished = self.servicer.in_flight.wait_idle(grace)
        if not finished:
            self.servicer.abandon.set()
            finished = self.servicer.in_flight.wait_idle(_ABANDONED)
        stopped.wait(_ABANDONED)
        self.servicer.log.close()
        self.servicer.janitor.stop()
        return finished

    def wait(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
