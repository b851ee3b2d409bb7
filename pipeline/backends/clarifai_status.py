"""Clarifai's status codes, and what each means for a request (docs/clarifai-api.md)."""

from __future__ import annotations

import grpc
from clarifai_grpc.grpc.api.status import status_code_pb2

from pipeline.errors import (
    AuthError,
    BackendError,
    FetchFailedError,
    OverLimitError,
    RejectedInputError,
    TransientBackendError,
)

_S = status_code_pb2
# A whole answer may be SUCCESS or MIXED_STATUS (several inputs); an output must be SUCCESS.
SUCCESS = _S.SUCCESS
SUCCESS_CODES = (_S.SUCCESS, _S.MIXED_STATUS)
# Retried (docs/clarifai-api.md, status codes); 98xxx (internal) is retried too.
TRANSIENT_CODES = frozenset({
    _S.TRY_AGAIN, _S.CONN_THROTTLED, _S.MODEL_DEPLOYING, _S.MODEL_QUEUED_FOR_DEPLOYMENT,
    _S.MODEL_BUSY_PLEASE_RETRY, _S.MODEL_LOADING, _S.RPC_REQUEST_QUEUE_FULL,
    _S.RPC_SERVER_UNAVAILABLE, _S.RPC_REQUEST_TIMEOUT, _S.INTERNAL_UNCATEGORIZED})
OVER_LIMIT_CODES = frozenset({_S.INPUT_VIDEO_OVER_LIMIT, _S.RPC_MAX_MESSAGE_SIZE_EXCEEDED})
# The API could not download a URL input (expired or refused URL, its own download timeout):
# the URL is made again (the chunk staged again) and the request retried.
REFETCH_CODES = frozenset({_S.INPUT_DOWNLOAD_FAILED, _S.INPUT_VIDEO_DOWNLOAD_FAILED})
MODEL_ACCESS_CODES = frozenset({_S.MODEL_DOES_NOT_EXIST, _S.MODEL_PERMISSION_DENIED})
TRANSIENT_GRPC = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                             grpc.StatusCode.ABORTED})
AUTH_GRPC = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


def classify(code: int, message: str, model_id: str) -> BackendError:
    """The error a Clarifai status code means for this chunk (docs/clarifai-api.md)."""
    if code in TRANSIENT_CODES or 98000 <= code < 99000:
        return TransientBackendError(message, code=code, throttled=code == _S.CONN_THROTTLED)
    if code in OVER_LIMIT_CODES:
        return OverLimitError(message, code=code)
    if code in REFETCH_CODES:
        return FetchFailedError(message, code=code)
    if 11000 <= code < 12000:
        return AuthError(f"the API refused the key or account: {message}; check CLARIFAI_PAT "
                         "(and CLARIFAI_USER_ID / CLARIFAI_APP_ID)", code=code)
    if code in MODEL_ACCESS_CODES:
        return AuthError(f"model {model_id!r} cannot be used: {message}; check --model "
                         "(and CLARIFAI_USER_ID / CLARIFAI_APP_ID)", code=code)
    if 30000 <= code < 32000 or code == _S.PREDICT_INVALID_REQUEST:
        return RejectedInputError(f"the API rejected the video: {message}", code=code)
    return BackendError(message, code=code)


def rpc_error(code: grpc.StatusCode, what: str, details: str) -> BackendError:
    """The error a gRPC-level failure means (the call never reached Clarifai's own checks)."""
    message = f"{what}: gRPC {code.name}: {details or 'no details'}"
    if code in AUTH_GRPC:
        return AuthError(f"the API refused the credentials ({message}); check CLARIFAI_PAT",
                         code=code.name)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if "larger than max" in details.lower():
            return OverLimitError(message, code=code.name)
        return TransientBackendError(message, code=code.name, throttled=True)
    if code in TRANSIENT_GRPC:
        return TransientBackendError(message, code=code.name)
    return BackendError(message, code=code.name)


def code_name(code: int) -> str:
    try:
        return str(_S.StatusCode.Name(code))
    except ValueError:
        return "UNKNOWN_CODE"
