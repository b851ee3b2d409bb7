"""Model names: the aliases users type, Clarifai's public model ids, and the embedded models."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import ModelNotAvailableError
from pipeline.types import BackendName, ModelInfo

# Clarifai's public models (user "clarifai", app "main") by the alias users type.
ALIASES: dict[str, str] = {
    "general": "general-image-recognition",
    "nsfw": "nsfw-recognition",
    "food": "food-item-recognition",
    "travel": "travel-recognition",
    "wedding": "wedding-recognition",
    "apparel": "apparel-recognition",
}

# The older hexadecimal ids of the same public models (the seed page's examples use these).
LEGACY_IDS: dict[str, str] = {
    "aaa03c23b3724a16a56b629203edc62c": "general",
    "e9576d86d2004ed1a38ba0cf39ecb4b1": "nsfw",
    "bd367be194cf45149e75f01d59f77ba7": "food",
    "eee28c313d69466f836ab83287a54ed9": "travel",
    "c386b7a870114f4a87477c0824499348": "wedding",
    "e0be3b9d6a454f0493ac3a30784001ff": "apparel",
}


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that runs in process, answering as the Clarifai model it stands in for."""

    alias: str
    id: str
    name: str
    concepts: tuple[tuple[str, str], ...]  # (concept id, concept name), in model output order
    version_id: str  # the model version it answers as (`serve` reports it)
    model_type_id: str = "visual-classifier"
    # Clarifai's video predict serves only a few public models; an image model (a user's own,
    # say) refuses video inputs and takes their frames as images (`--strategy frames`).
    takes_video: bool = True


# open_nsfw outputs [sfw, nsfw]; the concept ids are those of Clarifai's NSFW model, the version
# id the one Clarifai's public examples call (.../nsfw-recognition/versions/aa47.../outputs).
NSFW = EmbeddedModel("nsfw", ALIASES["nsfw"], "nsfw-recognition",
                     (("ai_RT20lm2Q", "sfw"), ("ai_KxzHKtPl", "nsfw")),
                     version_id="aa47919c9a8d4d94bfa283121281bcc4")
# The same network under an id of its own that takes images only, as most image models on
# Clarifai do: `serve` answers a video sent to it as Clarifai's image models do (see
# serve/inputs.py), so `--strategy frames` can be tested against a model that needs it.
NSFW_IMAGES = EmbeddedModel("nsfw-image", "nsfw-image-recognition", "nsfw-image-recognition",
                            NSFW.concepts, version_id="6c7a5b1e0d3f4a8e9b2c4d6e8f0a1b3c",
                            takes_video=False)
EMBEDDED: dict[str, EmbeddedModel] = {"nsfw": NSFW, "nsfw-image": NSFW_IMAGES}


def alias_of(model: str) -> str | None:
    """The alias for an alias, a Clarifai public model id or a legacy id; None if unknown."""
    if model in ALIASES:
        return model
    for alias, model_id in ALIASES.items():
        if model == model_id:
            return alias
    return LEGACY_IDS.get(model)


def clarifai_model_id(model: str) -> str:
    """What to send as model_id: an alias becomes Clarifai's id; anything else is sent as is."""
    return ALIASES.get(model, model)


def embedded(model: str) -> EmbeddedModel | None:
    """The embedded model that answers for `model` (an alias, a Clarifai id, a legacy id, or
    an embedded model's own id), if there is one."""
    alias = alias_of(model)
    if alias in EMBEDDED:
        return EMBEDDED[alias]
    return next((m for m in EMBEDDED.values() if model in (m.alias, m.id)), None)


def model_info(backend: BackendName, model: str) -> ModelInfo:
    """The model a backend answers with, as results name it (its id, and its name): known
    from the settings alone, so that a run's key needs no backend (no model loaded, no key).
    The local backend raises ModelNotAvailableError for a model it does not have."""
    local = embedded(model)
    if backend == "local":
        if local is None:
            raise ModelNotAvailableError(model, sorted(EMBEDDED))
        return ModelInfo(local.id, local.name)
    model_id = clarifai_model_id(model)
    return ModelInfo(model_id, local.name if local else model_id)
