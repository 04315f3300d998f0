"""`meter profiles sync`: one Amazon Bedrock application inference profile per tenant and model, cost-tagged.

Why: tenantmeter meters spend per tenant itself, but AWS Cost Explorer and Budgets only see what AWS bills. A
model call made through an application inference profile is billed to that profile, and the profile's tags
(tenantId, costCenter, applicationId, environment) become cost-allocation dimensions, so AWS's own figures split
per tenant too and can be reconciled with ours.

Safety rules, because these profiles carry live traffic:

- Idempotent: the name is deterministic (``tm-<tenant>-<model alias>``, or a hashed form when that is not a
  valid name) and so is the create call's ``clientRequestToken``; a run with nothing to change makes no write.
- Ours means tagged ``managedBy=tenantmeter`` with our tenantId and modelAlias tags and copying the wanted
  model. A profile with our name that is not ours is reported as a conflict and left alone, never deleted or
  overwritten (a profile's model cannot be changed in place: replacing it is the operator's decision).
- Only our profiles are deleted, only when their tenant/model pair is no longer wanted, and never while the
  tenants file still routes traffic to them.
- One failing call does not stop the rest; the result says what succeeded, what failed and why.
- Without ``apply`` (the default) only read calls are made: the result is the plan.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import TenantmeterError
from shared.pricing import PriceCatalog, canonical_model_id
from shared.tenants import TenantRegistry

if TYPE_CHECKING:
    from mypy_boto3_bedrock.client import BedrockClient
    from mypy_boto3_bedrock.type_defs import TagTypeDef

logger = logging.getLogger(__name__)

MANAGED_BY_TAG: Final = "managedBy"
MANAGED_BY_VALUE: Final = "tenantmeter"
TENANT_TAG: Final = "tenantId"
MODEL_TAG: Final = "modelAlias"
# The cost-allocation tags. Only these (and our own bookkeeping tags) are ever removed from a profile; tags
# someone else put on it are left as they are.
COST_ALLOCATION_TAGS: Final = (TENANT_TAG, "costCenter", "applicationId", "environment")
NAME_PREFIX: Final = "tm-"

# From the botocore `bedrock` service model: CreateInferenceProfile.inferenceProfileName (1-64 characters) and
# Tag key/value. botocore does not check patterns client-side, so we do, to fail before any call.
_NAME_RE: Final = re.compile(r"(?:[0-9a-zA-Z][ _-]?)+")
_NAME_MAX: Final = 64
_TAG_RE: Final = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")
_COPY_FROM_RE: Final = re.compile(
    r"arn:aws(|-us-gov|-cn|-iso|-iso-b):bedrock:(|[0-9a-z-]{0,20}):(|[0-9]{12}):(inference-profile|foundation-model)/[a-zA-Z0-9-:.]+"
)


class ProfileSyncError(TenantmeterError):
    """The wanted profiles cannot be worked out (bad input), or the existing ones cannot be read."""


class ActionKind(StrEnum):
    CREATE = "create"
    UPDATE_TAGS = "update-tags"
    DELETE = "delete"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"  # our name, not our profile (or another model): reported, left alone
    KEEP = "keep"  # ours and no longer wanted, but the tenants file still points at it: not deleted


WRITE_KINDS: Final = frozenset({ActionKind.CREATE, ActionKind.UPDATE_TAGS, ActionKind.DELETE})


class ActionStatus(StrEnum):
    PLANNED = "planned"  # a write, not made (dry run)
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to write (unchanged, conflict, keep)


@dataclass(frozen=True, slots=True)
class DesiredProfile:
    tenant_id: str
    model_alias: str
    name: str
    source_arn: str  # foundation model or system (cross-region) inference profile the profile copies
    tags: Mapping[str, str]

    @property
    def model_id(self) -> str:
        return canonical_model_id(self.source_arn)

    @property
    def client_request_token(self) -> str:
        """Same request, same token: a retried create after a timeout cannot make a second profile."""
        material = "\n".join([self.name, self.source_arn, *(f"{k}={v}" for k, v in sorted(self.tags.items()))])
        return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ExistingProfile:
    name: str
    arn: str
    model_ids: frozenset[str]  # canonical model ids of the profile's models
    tags: Mapping[str, str]

    @property
    def managed(self) -> bool:
        return self.tags.get(MANAGED_BY_TAG) == MANAGED_BY_VALUE


@dataclass(frozen=True, slots=True)
class ProfileAction:
    kind: ActionKind
    tenant_id: str
    model_alias: str
    name: str
    arn: str = ""
    source_arn: str = ""
    set_tags: Mapping[str, str] = field(default_factory=dict)  # create: all tags; update: added or changed
    remove_tag_keys: tuple[str, ...] = ()
    reason: str = ""
    status: ActionStatus = ActionStatus.SKIPPED
    error: str = ""
    client_request_token: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.kind.value,
            "status": self.status.value,
            "tenant_id": self.tenant_id,
            "model": self.model_alias,
            "name": self.name,
            "arn": self.arn,
            "source": self.source_arn,
            "set_tags": dict(sorted(self.set_tags.items())),
            "remove_tag_keys": list(self.remove_tag_keys),
            "reason": self.reason,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class ProfileSyncResult:
    actions: tuple[ProfileAction, ...]
    applied: bool
    profiles: Mapping[str, Mapping[str, str]]  # tenant id -> model alias -> profile ARN, for tenants.toml

    @property
    def failed(self) -> tuple[ProfileAction, ...]:
        return tuple(a for a in self.actions if a.status is ActionStatus.FAILED)

    @property
    def needs_attention(self) -> tuple[ProfileAction, ...]:
        return tuple(a for a in self.actions if a.kind in (ActionKind.CONFLICT, ActionKind.KEEP))

    @property
    def pending(self) -> tuple[ProfileAction, ...]:
        return tuple(a for a in self.actions if a.status is ActionStatus.PLANNED)

    @property
    def exit_code(self) -> int:
        """0: in sync, or every write succeeded. 1: a write failed, or a conflict or kept profile needs a human.
        3: a dry run found writes to make."""
        if self.failed or self.needs_attention:
            return 1
        if self.pending:
            return 3
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "exit_code": self.exit_code,
            "actions": [a.to_dict() for a in self.actions],
            "profiles": {tenant: dict(sorted(p.items())) for tenant, p in sorted(self.profiles.items())},
        }


# --- what is wanted -----------------------------------------------------------------------------------------


def profile_name(tenant_id: str, model_alias: str) -> str:
    """``tm-<tenant>-<alias>`` when that is a valid profile name (letters, digits, single separators, at most 64
    characters); otherwise a cleaned, shortened form with a hash of the pair, so the name stays deterministic."""
    plain = f"{NAME_PREFIX}{tenant_id}-{model_alias}"
    if len(plain) <= _NAME_MAX and _NAME_RE.fullmatch(plain):
        return plain
    digest = hashlib.sha256(f"{tenant_id}\0{model_alias}".encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^0-9a-zA-Z]+", "-", f"{tenant_id}-{model_alias}")
    room = _NAME_MAX - len(NAME_PREFIX) - 1 - len(digest)
    return f"{NAME_PREFIX}{cleaned[:room].strip('-')}-{digest}"


def source_arn(
    model_alias: str,
    *,
    catalog: PriceCatalog,
    region: str,
    partition: str = "aws",
    sources: Mapping[str, str] | None = None,
) -> str:
    """What the profile for ``model_alias`` copies. An explicit source (an ARN, or a foundation model id) wins;
    otherwise the catalog resolves the alias to a foundation model in ``region``. A system (cross-region)
    inference profile must be given as a full ARN: its ARN carries the account id."""
    given = (sources or {}).get(model_alias)
    if given and given.startswith("arn:"):
        if not _COPY_FROM_RE.fullmatch(given):
            raise ProfileSyncError(
                f"model {model_alias!r}: source {given!r} is not a foundation-model or inference-profile ARN"
            )
        return given
    if given:
        if canonical_model_id(given) != given:
            raise ProfileSyncError(
                f"model {model_alias!r}: {given!r} is a cross-region inference profile id; give its full ARN "
                f"(arn:{partition}:bedrock:{region}:<account>:inference-profile/{given})"
            )
        model_id = given
    else:
        entry = catalog.resolve(model_alias)
        if entry is None:
            raise ProfileSyncError(
                f"model {model_alias!r}: not in the price catalog; give its source (model id or ARN) explicitly"
            )
        model_id = entry.model_id
    return f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"


def models_from_registry(registry: TenantRegistry) -> dict[str, tuple[str, ...]]:
    """Each tenant's wanted models = the aliases already in its ``inference_profiles``."""
    return {t.tenant_id: tuple(sorted(t.inference_profiles)) for t in registry}


def desired_profiles(
    registry: TenantRegistry,
    models: Mapping[str, Sequence[str]],
    *,
    catalog: PriceCatalog,
    region: str,
    partition: str = "aws",
    sources: Mapping[str, str] | None = None,
) -> tuple[DesiredProfile, ...]:
    """One wanted profile per (tenant, model alias) in ``models`` (tenant id -> aliases). Every tenant must be
    in the registry; its tags are its ``default_tags`` plus tenantId, managedBy and modelAlias."""
    wanted: list[DesiredProfile] = []
    names: dict[str, tuple[str, str]] = {}
    for tenant_id, aliases in sorted(models.items()):
        tenant = registry.find(tenant_id)
        if tenant is None:
            raise ProfileSyncError(f"tenant {tenant_id!r} is not in the tenants file")
        for alias in sorted(set(aliases)):
            tags = _tags_for(tenant_id, alias, tenant.default_tags)
            name = profile_name(tenant_id, alias)
            if name in names:
                other = names[name]
                raise ProfileSyncError(
                    f"tenant {tenant_id!r} model {alias!r} and tenant {other[0]!r} model {other[1]!r} would share "
                    f"the profile name {name!r}"
                )
            names[name] = (tenant_id, alias)
            src = source_arn(alias, catalog=catalog, region=region, partition=partition, sources=sources)
            wanted.append(DesiredProfile(tenant_id, alias, name, src, tags))
    return tuple(wanted)


def _tags_for(tenant_id: str, alias: str, default_tags: Mapping[str, str]) -> dict[str, str]:
    where = f"tenant {tenant_id!r}"
    for reserved in (MANAGED_BY_TAG, MODEL_TAG):
        if reserved in default_tags:
            raise ProfileSyncError(f"{where}: tag {reserved!r} is reserved for tenantmeter's bookkeeping")
    if default_tags.get(TENANT_TAG, tenant_id) != tenant_id:
        raise ProfileSyncError(f"{where}: tag {TENANT_TAG!r} must be the tenant's own id")
    tags = {**default_tags, TENANT_TAG: tenant_id, MANAGED_BY_TAG: MANAGED_BY_VALUE, MODEL_TAG: alias}
    for key, value in tags.items():
        if key.lower().startswith("aws:") or not _TAG_RE.fullmatch(key) or not 1 <= len(key) <= 128:
            raise ProfileSyncError(f"{where}: tag key {key!r} is not allowed on a Bedrock resource")
        if not _TAG_RE.fullmatch(value) or len(value) > 256:
            raise ProfileSyncError(
                f"{where}: tag {key!r} value {value!r} has characters Bedrock does not accept "
                "(letters, digits, spaces and . _ : / = + @ - only)"
            )
    return tags


# --- what exists --------------------------------------------------------------------------------------------


def read_existing(client: BedrockClient) -> tuple[ExistingProfile, ...]:
    """Every application inference profile whose name has our prefix, with its models and tags (reads only)."""
    found: list[ExistingProfile] = []
    try:
        for page in client.get_paginator("list_inference_profiles").paginate(typeEquals="APPLICATION"):
            for summary in page.get("inferenceProfileSummaries", []):
                name = summary["inferenceProfileName"]
                if not name.startswith(NAME_PREFIX):
                    continue
                arn = summary["inferenceProfileArn"]
                tags = client.list_tags_for_resource(resourceARN=arn)["tags"]
                model_ids = frozenset(canonical_model_id(m["modelArn"]) for m in summary["models"] if "modelArn" in m)
                found.append(ExistingProfile(name, arn, model_ids, {t["key"]: t["value"] for t in tags}))
    except (ClientError, BotoCoreError) as exc:
        raise ProfileSyncError(f"cannot read the existing inference profiles: {exc}") from exc
    return tuple(found)


# --- the plan (pure) ----------------------------------------------------------------------------------------


def plan_profiles(
    desired: Iterable[DesiredProfile],
    existing: Iterable[ExistingProfile],
    *,
    referenced_arns: Collection[str] = (),
) -> tuple[ProfileAction, ...]:
    """Creates, tag updates and deletes that turn ``existing`` into ``desired``, plus what is left alone and
    why. ``referenced_arns``: profile ARNs the tenants file routes traffic to (never deleted)."""
    by_name = {e.name: e for e in existing}
    actions: list[ProfileAction] = []
    claimed: set[str] = set()
    for want in desired:
        have = by_name.get(want.name)
        if have is None:
            actions.append(
                ProfileAction(
                    ActionKind.CREATE,
                    want.tenant_id,
                    want.model_alias,
                    want.name,
                    source_arn=want.source_arn,
                    set_tags=dict(want.tags),
                    status=ActionStatus.PLANNED,
                    client_request_token=want.client_request_token,
                )
            )
            continue
        claimed.add(have.name)
        base = ProfileAction(
            ActionKind.UNCHANGED, want.tenant_id, want.model_alias, want.name, arn=have.arn, source_arn=want.source_arn
        )
        problem = _not_ours(want, have)
        if problem:
            actions.append(replace(base, kind=ActionKind.CONFLICT, reason=problem))
            continue
        set_tags = {k: v for k, v in want.tags.items() if have.tags.get(k) != v}
        managed_keys = {*COST_ALLOCATION_TAGS, MANAGED_BY_TAG, MODEL_TAG}
        remove = tuple(sorted(k for k in have.tags if k in managed_keys and k not in want.tags))
        if set_tags or remove:
            actions.append(
                replace(
                    base,
                    kind=ActionKind.UPDATE_TAGS,
                    set_tags=set_tags,
                    remove_tag_keys=remove,
                    status=ActionStatus.PLANNED,
                )
            )
        else:
            actions.append(base)
    for have in existing:
        if have.name in claimed or not have.managed:
            continue  # wanted (handled above), or not ours: never touched
        owner, alias = have.tags.get(TENANT_TAG, ""), have.tags.get(MODEL_TAG, "")
        if have.arn in referenced_arns:
            actions.append(
                ProfileAction(
                    ActionKind.KEEP,
                    owner,
                    alias,
                    have.name,
                    arn=have.arn,
                    reason="no longer wanted, but the tenants file still routes traffic to it: remove it there first",
                )
            )
        else:
            actions.append(
                ProfileAction(ActionKind.DELETE, owner, alias, have.name, arn=have.arn, status=ActionStatus.PLANNED)
            )
    return tuple(actions)


def _not_ours(want: DesiredProfile, have: ExistingProfile) -> str:
    if not have.managed:
        return f"a profile named {have.name!r} exists without the {MANAGED_BY_TAG}={MANAGED_BY_VALUE} tag: not ours"
    owner, alias = have.tags.get(TENANT_TAG), have.tags.get(MODEL_TAG)
    if (owner, alias) != (want.tenant_id, want.model_alias):
        return f"managed profile {have.name!r} is tagged for tenant {owner!r} model {alias!r}"
    if have.model_ids != {want.model_id}:
        copies = ", ".join(sorted(have.model_ids)) or "nothing"
        return f"copies {copies}, wanted {want.model_id}: replace it by hand if intended"
    return ""


# --- applying -----------------------------------------------------------------------------------------------


def apply_actions(client: BedrockClient, actions: Sequence[ProfileAction]) -> tuple[ProfileAction, ...]:
    """Make the planned writes, one at a time; a failure is recorded on its action and the rest go on."""
    done: list[ProfileAction] = []
    for action in actions:
        if action.status is not ActionStatus.PLANNED:
            done.append(action)
            continue
        try:
            arn = _write(client, action)
        except (ClientError, BotoCoreError) as exc:
            error = _describe(exc)
            logger.warning(
                "inference profile write failed",
                extra={"action": action.kind.value, "tenant_id": action.tenant_id, "profile": action.name},
            )
            done.append(replace(action, status=ActionStatus.FAILED, error=error))
            continue
        done.append(replace(action, status=ActionStatus.DONE, arn=arn))
    return tuple(done)


def _write(client: BedrockClient, action: ProfileAction) -> str:
    if action.kind is ActionKind.CREATE:
        response = client.create_inference_profile(
            inferenceProfileName=action.name,
            modelSource={"copyFrom": action.source_arn},
            tags=_tag_list(action.set_tags),
            clientRequestToken=action.client_request_token,
        )
        return response["inferenceProfileArn"]
    if action.kind is ActionKind.UPDATE_TAGS:
        if action.set_tags:
            client.tag_resource(resourceARN=action.arn, tags=_tag_list(action.set_tags))
        if action.remove_tag_keys:
            client.untag_resource(resourceARN=action.arn, tagKeys=list(action.remove_tag_keys))
        return action.arn
    if action.kind is ActionKind.DELETE:
        client.delete_inference_profile(inferenceProfileIdentifier=action.arn)
        return action.arn
    raise AssertionError(f"not a write: {action.kind}")  # pragma: no cover


def _tag_list(tags: Mapping[str, str]) -> list[TagTypeDef]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def _describe(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def resulting_profiles(registry: TenantRegistry, actions: Iterable[ProfileAction]) -> dict[str, dict[str, str]]:
    """Each tenant's alias -> ARN mapping after the actions: its current ``inference_profiles``, with the profiles
    that exist (unchanged, re-tagged, created) set and the deleted ones dropped. Planned creates have no ARN
    yet and so do not appear; conflicts keep whatever the tenants file has."""
    mapping = {t.tenant_id: dict(t.inference_profiles) for t in registry}
    for action in actions:
        profiles = mapping.get(action.tenant_id)
        if profiles is None:
            continue
        exists = action.kind in (ActionKind.UNCHANGED, ActionKind.UPDATE_TAGS) or (
            action.kind is ActionKind.CREATE and action.status is ActionStatus.DONE
        )
        if exists and action.arn:
            profiles[action.model_alias] = action.arn
        if action.kind is ActionKind.DELETE and action.status is ActionStatus.DONE:
            for alias in [a for a, arn in profiles.items() if arn == action.arn]:
                del profiles[alias]
    return mapping


def sync_profiles(
    client: BedrockClient,
    registry: TenantRegistry,
    models: Mapping[str, Sequence[str]],
    *,
    catalog: PriceCatalog,
    sources: Mapping[str, str] | None = None,
    apply: bool = False,
) -> ProfileSyncResult:
    """Plan (and with ``apply``, make) the profile changes for ``models`` (tenant id -> model aliases) in the
    client's region. Without ``apply`` only read calls are made."""
    desired = desired_profiles(
        registry,
        models,
        catalog=catalog,
        region=client.meta.region_name,
        partition=client.meta.partition,
        sources=sources,
    )
    existing = read_existing(client)
    referenced = {arn for t in registry for arn in t.inference_profiles.values()}
    actions = plan_profiles(desired, existing, referenced_arns=referenced)
    if apply:
        actions = apply_actions(client, actions)
    return ProfileSyncResult(actions, apply, resulting_profiles(registry, actions))


# --- rendering ----------------------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    body = [list(r) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(headers, *body, strict=False)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *body]]


def render_text(result: ProfileSyncResult) -> str:
    """The actions as a table (the detail column: the ARN, or why a profile was left alone or a write failed),
    then the tenants.toml lines."""
    mode = "applied" if result.applied else "dry run: no write calls made (apply to make them)"
    counts = ", ".join(
        f"{n} {kind.value}" for kind in ActionKind if (n := sum(1 for a in result.actions if a.kind is kind))
    )
    lines = [f"Inference profiles, {mode}: {counts or 'nothing wanted, nothing managed'}"]
    if result.actions:
        lines.append("")
        lines += _table(
            ("ACTION", "STATUS", "TENANT", "MODEL", "PROFILE", "DETAIL"),
            (
                (a.kind.value, a.status.value, a.tenant_id, a.model_alias, a.name, a.error or a.reason or a.arn)
                for a in result.actions
            ),
        )
    toml = render_tenants_toml(result)
    if toml:
        lines += ["", "Paste into tenants.toml (inference_profiles per tenant):", toml.rstrip("\n")]
    return "\n".join(lines) + "\n"


def render_json(result: ProfileSyncResult) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"


def render_tenants_toml(result: ProfileSyncResult) -> str:
    """One ``inference_profiles = {...}`` line per tenant that has any, under a comment naming the tenant."""
    lines: list[str] = []
    for tenant_id, profiles in sorted(result.profiles.items()):
        if not profiles:
            continue
        pairs = ", ".join(f"{json.dumps(alias)} = {json.dumps(arn)}" for alias, arn in sorted(profiles.items()))
        lines += [f"# tenant {tenant_id}", f"inference_profiles = {{ {pairs} }}"]
    return "\n".join(lines) + "\n" if lines else ""


__all__ = [
    "COST_ALLOCATION_TAGS",
    "MANAGED_BY_TAG",
    "MANAGED_BY_VALUE",
    "MODEL_TAG",
    "TENANT_TAG",
    "ActionKind",
    "ActionStatus",
    "DesiredProfile",
    "ExistingProfile",
    "ProfileAction",
    "ProfileSyncError",
    "ProfileSyncResult",
    "apply_actions",
    "desired_profiles",
    "models_from_registry",
    "plan_profiles",
    "profile_name",
    "read_existing",
    "render_json",
    "render_tenants_toml",
    "render_text",
    "resulting_profiles",
    "source_arn",
    "sync_profiles",
]
