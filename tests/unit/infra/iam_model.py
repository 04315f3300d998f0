"""What a function's code calls, in IAM terms, against what Terraform grants its role.

- ``BotoCallRecorder`` records every AWS API call made through botocore while installed, with its parameters,
  by registering a ``before-parameter-build`` hook on each client created (it wraps botocore's
  ``Session.create_client``, so clients of the default boto3 session and of private sessions alike are seen).
- ``required_permissions(call)`` maps one recorded call to the IAM (action, resource ARN) pairs AWS checks:
  mostly ``<service>:<Operation>``, with the documented exceptions (SendMessageBatch is sqs:SendMessage,
  Converse is bedrock:InvokeModel, TransactWriteItems is checked per item action, ...).
- ``function_policy(component, conditions, bindings)`` reads the function's two policy documents from
  Terraform (modules/lambda_function's runtime policy and the component's own), keeps the statements that
  apply to the configuration, and resolves their resource expressions with ``bindings`` (Terraform expression
  -> ARN, as envs/dev wires them); ``ungranted(calls, statements)`` lists what the policy does not allow.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import botocore.session
import pytest

from tests.unit.infra.tfmodel import expr, load_module, policy_statements, substitute

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class ApiCall:
    service: str  # botocore service name, e.g. bedrock-runtime
    iam_prefix: str  # the service's signing name, which is its IAM prefix (bedrock-runtime -> bedrock)
    operation: str  # e.g. Converse
    params: Mapping[str, Any]


@dataclass
class BotoCallRecorder:
    calls: list[ApiCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        service_model = model.service_model
        call = ApiCall(
            service=service_model.service_name,
            iam_prefix=service_model.signing_name,
            operation=model.name,
            params=dict(params),
        )
        with self._lock:
            self.calls.append(call)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Hook every botocore client created from now on (until monkeypatch undoes it)."""
        original = botocore.session.Session.create_client
        recorder = self

        def create_client(session: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            client.meta.events.register("before-parameter-build", recorder._record)
            return client

        monkeypatch.setattr(botocore.session.Session, "create_client", create_client)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def operations(self) -> set[tuple[str, str]]:
        return {(c.service, c.operation) for c in self.calls}


# ---------------------------------------------------------------- call -> IAM


@dataclass(frozen=True)
class Permission:
    action: str
    resource: str | None  # None: the call names no resource (e.g. a paginated follow-up); any grant of the action


ACTION_OF: dict[tuple[str, str], str] = {
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("bedrock-runtime", "Converse"): "bedrock:InvokeModel",
    ("bedrock-runtime", "ConverseStream"): "bedrock:InvokeModelWithResponseStream",
    ("sagemaker-runtime", "InvokeEndpointWithResponseStream"): "sagemaker:InvokeEndpointWithResponseStream",
}
# Calls AWS authorises without any IAM permission.
NO_PERMISSION_NEEDED = {("sts", "GetCallerIdentity")}
# TransactWriteItems / TransactGetItems are authorised per item, with the item's own action.
TRANSACT_ITEM_ACTION = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}
S3_BUCKET_LEVEL = {"s3:ListBucket"}


def _table_arn(name: str, region: str, account: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:dynamodb:{region}:{account}:table/{name}"


def _bedrock_model_arn(model_id: str, region: str, account: str) -> str:
    if model_id.startswith("arn:"):
        return model_id
    # A cross-region inference profile id starts with a geography (us., eu., apac., global.).
    if model_id.split(".", 1)[0] in ("us", "eu", "apac", "global", "us-gov", "ca", "jp", "au"):
        return f"arn:aws:bedrock:{region}:{account}:inference-profile/{model_id}"
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def _resource(call: ApiCall, action: str, region: str, account: str) -> str | None:
    p = call.params
    if call.service == "kinesis":
        if p.get("StreamARN"):
            return str(p["StreamARN"])
        if p.get("StreamName"):
            return f"arn:aws:kinesis:{region}:{account}:stream/{p['StreamName']}"
        return None
    if call.service == "sns":
        return str(p.get("TopicArn") or p.get("TargetArn") or "") or None
    if call.service == "sqs":
        parts = urlparse(str(p["QueueUrl"])).path.strip("/").split("/")
        return f"arn:aws:sqs:{region}:{parts[-2]}:{parts[-1]}"
    if call.service == "s3":
        if action in S3_BUCKET_LEVEL or "Key" not in p:
            return f"arn:aws:s3:::{p['Bucket']}"
        return f"arn:aws:s3:::{p['Bucket']}/{p['Key']}"
    if call.service == "dynamodb":
        return _table_arn(str(p["TableName"]), region, account) if "TableName" in p else None
    if call.service == "secretsmanager":
        secret = str(p["SecretId"])
        return secret if secret.startswith("arn:") else f"arn:aws:secretsmanager:{region}:{account}:secret:{secret}-*"
    if call.service == "bedrock-runtime":
        return _bedrock_model_arn(str(p["modelId"]), region, account)
    if call.service == "sagemaker-runtime":
        return f"arn:aws:sagemaker:{region}:{account}:endpoint/{str(p['EndpointName']).lower()}"
    raise NotImplementedError(f"no resource mapping for {call.service}:{call.operation}; add one")


def required_permissions(call: ApiCall, region: str = REGION, account: str = ACCOUNT_ID) -> list[Permission]:
    """The (action, resource) pairs IAM evaluates for one API call."""
    if (call.service, call.operation) in NO_PERMISSION_NEEDED:
        return []
    if call.service == "dynamodb" and call.operation in ("TransactWriteItems", "TransactGetItems"):
        perms = []
        for item in call.params["TransactItems"]:
            ((kind, body),) = item.items()
            perms.append(Permission(TRANSACT_ITEM_ACTION[kind], _table_arn(body["TableName"], region, account)))
        return perms
    if call.service == "dynamodb" and call.operation in ("BatchGetItem", "BatchWriteItem"):
        action = f"dynamodb:{call.operation}"
        return [Permission(action, _table_arn(t, region, account)) for t in call.params["RequestItems"]]
    action = ACTION_OF.get((call.service, call.operation), f"{call.iam_prefix}:{call.operation}")
    return [Permission(action, _resource(call, action, region, account))]


# ---------------------------------------------------------------- Terraform policy -> resolved statements


@dataclass(frozen=True)
class Grant:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]


Binding = str | Sequence[str]


def resolve(resource: str, bindings: Mapping[str, Binding]) -> list[str]:
    """A statement's resource entry as ARNs: a whole ``${expr}`` is looked up (a binding may be a list);
    a template has each ``${ref}`` substituted; a literal stays. An expression without a binding raises."""
    whole = expr(resource)
    if whole is not None:
        if whole not in bindings:
            raise KeyError(f"no binding for {resource!r}")
        value = bindings[whole]
        return [value] if isinstance(value, str) else list(value)
    single = {k: v for k, v in bindings.items() if isinstance(v, str)}
    return [substitute(resource, single)]


def function_policy(component: str, conditions: Mapping[str, bool], bindings: Mapping[str, Binding]) -> list[Grant]:
    """Every statement of the function's role (runtime + component policy) for one configuration."""
    runtime = load_module("modules/lambda_function")
    own = load_module(component)
    docs = [
        (runtime, runtime.data[("aws_iam_policy_document", "runtime")]),
        (own, own.data[("aws_iam_policy_document", "function")]),
    ]
    grants = []
    for module, doc in docs:
        for st in policy_statements(doc, conditions, module.locals):
            resources = tuple(arn for r in st.resources for arn in resolve(r, bindings))
            grants.append(Grant(st.sid, st.actions, resources))
    return grants


def is_allowed(permission: Permission, grants: Iterable[Grant]) -> bool:
    for grant in grants:
        if not any(fnmatch.fnmatch(permission.action.lower(), a.lower()) for a in grant.actions):
            continue
        if permission.resource is None or any(fnmatch.fnmatchcase(permission.resource, r) for r in grant.resources):
            return True
    return False


def ungranted(calls: Iterable[ApiCall], grants: Sequence[Grant]) -> list[str]:
    """Each recorded call whose permissions the grants do not cover, described."""
    missing = []
    for call in calls:
        for permission in required_permissions(call):
            if not is_allowed(permission, grants):
                missing.append(f"{call.service}.{call.operation} needs {permission.action} on {permission.resource}")
    return sorted(set(missing))
