"""`serve`'s model information: the read-only V2 methods Clarifai's SDKs call before predicting.

Answered from the embedded models' own metadata (`backends.models`). Each function takes a
request and returns the response; the servicer checks the key and logs the request first.
What Clarifai's Python SDK (12.x) needs from them:
- `Model(...)` sends GetModel and needs SUCCESS; a full load (`predict_by_bytes` without
  `input_type`, `load_info()`) needs a non-empty `model` with `id` and `model_type_id`, and sends
  `model.model_version.id` back as PostModelOutputs' `version_id`.
- GetModelType's `input_fields` must hold exactly one field: the SDK sends every input of a
  `predict_by_*` without `input_type` as `input_fields[0]`, and refuses a model with two.
- The List* methods are paged (page from 1, per_page 0 = the default) and the SDK asks for the
  next page until one comes back empty: a server that ignored `page` would make it loop forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from clarifai_grpc.grpc.api import resources_pb2, service_pb2
from clarifai_grpc.grpc.api.status import status_code_pb2 as codes
from clarifai_grpc.grpc.api.status import status_pb2

from pipeline.backends import models
from pipeline.backends.models import EmbeddedModel

DEFAULT_PER_PAGE = 128
# Clarifai's public models live in user "clarifai", app "main"; a request that names no app
# gets those. Otherwise the caller's user and app are echoed: the SDK's App.list_models() keeps
# only models whose app_id is the App's, and PostModelOutputs answers any user and app.
OWNER = resources_pb2.UserAppIDSet(user_id="clarifai", app_id="main")
T = TypeVar("T")


class NotServed(Exception):
    """A model, version or model type this server does not have; carries the status to answer."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.status = status(codes.MODEL_DOES_NOT_EXIST, description)


def status(code: int, description: str = "") -> status_pb2.Status:
    return status_pb2.Status(code=code, description=description or codes.StatusCode.Name(code))


def served_ids() -> list[str]:
    return sorted({m.id for m in models.EMBEDDED.values()} | set(models.EMBEDDED))


def find(model_id: str, version_id: str = "") -> EmbeddedModel:
    """The embedded model answering for `model_id` (an alias, Clarifai's id or a legacy id)."""
    model = models.embedded(model_id)
    if model is None:
        raise NotServed(f"Model does not exist: {model_id!r} (this server has: "
                        f"{', '.join(served_ids())})")
    if version_id and version_id != model.version_id:
        raise NotServed(f"Model version does not exist: {version_id!r} of model {model.id!r} "
                        f"(this server has version {model.version_id})")
    return model


# -- the methods -----------------------------------------------------------------------------
def get_model(request: service_pb2.GetModelRequest) -> service_pb2.SingleModelResponse:
    found = find(request.model_id, request.version_id)
    return service_pb2.SingleModelResponse(status=_ok(),
                                           model=model(found, request.user_app_id))


def get_model_version(request: service_pb2.GetModelVersionRequest,
                      ) -> service_pb2.SingleModelVersionResponse:
    found = find(request.model_id, request.version_id)
    return service_pb2.SingleModelVersionResponse(
        status=_ok(), model_version=version(found, request.user_app_id))


def list_model_versions(request: service_pb2.ListModelVersionsRequest,
                        ) -> service_pb2.MultiModelVersionResponse:
    found = find(request.model_id)
    return service_pb2.MultiModelVersionResponse(status=_ok(), model_versions=page(
        [version(found, request.user_app_id)], request.page, request.per_page))


def get_model_type(request: service_pb2.GetModelTypeRequest,
                   ) -> service_pb2.SingleModelTypeResponse:
    types = {m.model_type_id for m in models.EMBEDDED.values()}
    if request.model_type_id not in types:  # no code of its own exists: Clarifai's nearest
        raise NotServed(f"Model type does not exist: {request.model_type_id!r} (this server "
                        f"has: {', '.join(sorted(types))})")
    return service_pb2.SingleModelTypeResponse(status=_ok(),
                                               model_type=model_type(request.model_type_id))


def list_models(request: service_pb2.ListModelsRequest) -> service_pb2.MultiModelResponse:
    found = [model(m, request.user_app_id) for m in models.EMBEDDED.values()
             if request.model_type_id in ("", m.model_type_id)]
    return service_pb2.MultiModelResponse(status=_ok(),
                                          models=page(found, request.page, request.per_page))


def list_model_concepts(request: service_pb2.ListModelConceptsRequest,
                        ) -> service_pb2.MultiConceptResponse:
    found = concepts(find(request.model_id, request.version_id), request.user_app_id)
    return service_pb2.MultiConceptResponse(status=_ok(),
                                            concepts=page(found, request.page, request.per_page))


def list_concepts(request: service_pb2.ListConceptsRequest) -> service_pb2.MultiConceptResponse:
    unique = {c.id: c for m in models.EMBEDDED.values()
              for c in concepts(m, request.user_app_id)}
    return service_pb2.MultiConceptResponse(
        status=_ok(), concepts=page(list(unique.values()), request.page, request.per_page))


# -- the resources, as Clarifai describes its public models -----------------------------------
def model(found: EmbeddedModel, caller: resources_pb2.UserAppIDSet) -> resources_pb2.Model:
    owner = _owner(caller)
    answered = version(found, caller)
    return resources_pb2.Model(
        id=found.id, name=found.name, display_name=found.name, user_id=owner.user_id,
        app_id=owner.app_id, model_type_id=found.model_type_id, model_version=answered,
        output_info=answered.output_info, visibility=_public())


def version(found: EmbeddedModel, caller: resources_pb2.UserAppIDSet,
            ) -> resources_pb2.ModelVersion:
    # No sample_ms in output_config: the SDK sends a loaded model's output_info back with every
    # predict, where it would override the server's default for callers who set none.
    owner = _owner(caller)
    output_info = resources_pb2.OutputInfo(
        data=resources_pb2.Data(concepts=concepts(found, caller)),
        output_config=resources_pb2.OutputConfig(concepts_mutually_exclusive=True))
    return resources_pb2.ModelVersion(
        id=found.version_id, status=status(codes.MODEL_TRAINED, "Model is trained and ready"),
        active_concept_count=len(found.concepts), user_id=owner.user_id, app_id=owner.app_id,
        output_info=output_info, visibility=_public())


def model_type(type_id: str) -> resources_pb2.ModelType:
    """A classifier of images (videos are sent as `video` by the caller: see the module doc)."""
    return resources_pb2.ModelType(id=type_id, title=type_id.replace("-", " ").title(),
                                   input_fields=["image"], output_fields=["concepts"])


def concepts(found: EmbeddedModel, caller: resources_pb2.UserAppIDSet,
             ) -> list[resources_pb2.Concept]:
    owner = _owner(caller)
    return [resources_pb2.Concept(id=cid, name=name, value=1.0, user_id=owner.user_id,
                                  app_id=owner.app_id) for cid, name in found.concepts]


def page(items: Sequence[T], number: int, per_page: int) -> list[T]:
    """Clarifai's paging: pages from 1, `per_page` 0 = the default; past the end, empty."""
    size = per_page or DEFAULT_PER_PAGE
    start = (max(number, 1) - 1) * size
    return list(items[start:start + size])


def _owner(caller: resources_pb2.UserAppIDSet) -> resources_pb2.UserAppIDSet:
    return resources_pb2.UserAppIDSet(user_id=caller.user_id or OWNER.user_id,
                                      app_id=caller.app_id or OWNER.app_id)


def _public() -> resources_pb2.Visibility:
    return resources_pb2.Visibility(gettable=resources_pb2.Visibility.PUBLIC)


def _ok() -> status_pb2.Status:
    return status(codes.SUCCESS, "Ok")
