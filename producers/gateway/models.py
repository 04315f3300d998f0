"""The model port: what the gateway asks of a model backend, and how a model name becomes a backend call.

The gateway speaks one neutral shape (``ModelCall`` in, ``ModelReply`` or a stream of ``StreamPart`` out) to
every backend (Bedrock Converse, a SageMaker endpoint, the simulated model), so quota, metering and response
rendering never depend on which backend served a request. ``ModelRouter`` turns the name a client asked for
(alias, model id, cross-region profile id, or SageMaker endpoint name) into the id to call and the backend
that serves it, substituting the tenant's application inference profile ARN when one is configured.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shared.errors import TenantmeterError
from shared.pricing import PriceCatalog, TokenUsage
from shared.tenants import Tenant


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "user" or "assistant"; system text travels separately in ModelCall.system
    text: str


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One inference request as every backend receives it. Sampling parameters are floats: they are model
    knobs, not money."""

    model_id: str  # what to call: a Bedrock model id, an inference profile ARN, or a SageMaker endpoint name
    messages: tuple[Message, ...]
    system: tuple[str, ...] = ()
    max_tokens: int = 1024
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelReply:
    text: str
    stop_reason: str  # Bedrock vocabulary: end_turn, max_tokens, stop_sequence, content_filtered, ...
    usage: TokenUsage
    # Non-empty when the backend reported no usage and the gateway counted it itself: says how.
    estimated_by: str = ""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    stop_reason: str
    usage: TokenUsage
    estimated_by: str = ""


StreamPart = TextDelta | StreamEnd


class FailureKind(StrEnum):
    THROTTLED = "throttled"  # the backend is over its own capacity: retry later
    REJECTED = "rejected"  # the backend refused this request as invalid (client's fault)
    FAILED = "failed"  # anything else: the backend broke


class ModelBackendError(TenantmeterError):
    """A backend call failed. ``message`` is safe to show a client: it never carries prompt or output text."""

    def __init__(self, kind: FailureKind, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code


class ModelBackend(Protocol):
    def converse(self, call: ModelCall) -> ModelReply: ...

    def converse_stream(self, call: ModelCall) -> Iterator[StreamPart]:
        """Text deltas, then exactly one StreamEnd carrying the usage. May raise ModelBackendError before or
        during iteration."""
        ...


@dataclass(frozen=True, slots=True)
class Route:
    alias: str  # the name the client asked for (the event's ``model``)
    model_id: str  # what is called and recorded (the event's ``model_id``)
    pricing_alias: str  # a name the price catalog knows, for when model_id is an application profile ARN
    backend: ModelBackend


class UnknownModelError(TenantmeterError, LookupError):
    """The requested model is neither in the price catalog, nor routed, nor a configured SageMaker endpoint."""


class ModelRouter:
    """Model name -> (id to call, backend). Known names: catalog model ids and aliases, cross-region profile ids
    of catalog models (``us.anthropic...``), explicit ``routes`` (alias -> Bedrock id, e.g. to send an alias to
    a cross-region profile), and SageMaker endpoint names (called by that name, as the seed guidance does)."""

    def __init__(
        self,
        catalog: PriceCatalog,
        backend: ModelBackend,
        *,
        endpoints: Mapping[str, ModelBackend] | None = None,
        routes: Mapping[str, str] | None = None,
    ) -> None:
        self._catalog = catalog
        self._backend = backend
        self._endpoints = dict(endpoints or {})
        self._routes = dict(routes or {})
        for alias, target in self._routes.items():
            if catalog.resolve(target) is None and catalog.resolve(alias) is None:
                raise ValueError(f"route {alias!r} -> {target!r}: neither is in the price catalog")

    def resolve(self, model: str, tenant: Tenant) -> Route:
        if model in self._endpoints:
            return Route(model, model, model, self._endpoints[model])
        if model in self._routes:
            model_id = self._routes[model]
        else:
            entry = self._catalog.resolve(model)
            if entry is None:
                raise UnknownModelError(model)
            # An alias becomes the catalog's model id; a full or cross-region id is called as given.
            model_id = entry.model_id if model in entry.aliases else model
        profile = tenant.inference_profiles.get(model)
        if profile:
            return Route(model, profile, model_id, self._backend)
        return Route(model, model_id, model_id, self._backend)

    def known_models(self) -> list[str]:
        names = set(self._endpoints) | set(self._routes)
        for entry in self._catalog.models.values():
            names.add(entry.model_id)
            names.update(entry.aliases)
        return sorted(names)
