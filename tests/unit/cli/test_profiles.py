"""`meter profiles sync` against botocore's Stubber, which checks every request and response against the real
`bedrock` service model and fails on any call that was not expected (so "no write call" is enforced, not
assumed)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from shared.pricing import PriceCatalog
from shared.tenants import TenantRegistry
from tenantmeter_cli.profiles import (
    ActionKind,
    ActionStatus,
    DesiredProfile,
    ExistingProfile,
    ProfileSyncError,
    ProfileSyncResult,
    desired_profiles,
    models_from_registry,
    plan_profiles,
    profile_name,
    render_json,
    render_tenants_toml,
    render_text,
    source_arn,
    sync_profiles,
)

ACCOUNT = "123456789012"
CATALOG = PriceCatalog.load()
HAIKU_SRC = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"
NOVA_SRC = "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0"
SONNET4_PROFILE = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0"


def profile_arn(profile_id: str) -> str:
    return f"arn:aws:bedrock:us-east-1:{ACCOUNT}:application-inference-profile/{profile_id}"


ACME_HAIKU = profile_arn("acmehaiku001")
GLOBEX_HAIKU = profile_arn("globexhaiku1")
GLOBEX_NOVA = profile_arn("globexnova01")

ACME_TAGS = {"costCenter": "cc-42", "applicationId": "support-bot", "environment": "prod"}
GLOBEX_TAGS = {"costCenter": "cc-7", "applicationId": "search", "environment": "staging"}


def registry(**profiles: dict[str, str]) -> TenantRegistry:
    return TenantRegistry.from_dict(
        {
            "tenants": [
                {"id": "acme", "tier": "premium", "tags": ACME_TAGS, "inference_profiles": profiles.get("acme", {})},
                {
                    "id": "globex",
                    "tier": "standard",
                    "tags": GLOBEX_TAGS,
                    "inference_profiles": profiles.get("globex", {}),
                },
            ]
        }
    )


MODELS = {"acme": ["claude-3-5-haiku"], "globex": ["claude-3-5-haiku", "nova-pro"]}


def tags_of(tenant: str, alias: str, base: dict[str, str]) -> dict[str, str]:
    return {**base, "tenantId": tenant, "managedBy": "tenantmeter", "modelAlias": alias}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def summary(name: str, arn: str, source: str) -> dict[str, Any]:
    return {
        "inferenceProfileName": name,
        "inferenceProfileArn": arn,
        "inferenceProfileId": arn.rsplit("/", 1)[1],
        "models": [{"modelArn": source}],
        "status": "ACTIVE",
        "type": "APPLICATION",
    }


def want(tenant: str, alias: str, source: str, base: dict[str, str]) -> DesiredProfile:
    return DesiredProfile(tenant, alias, profile_name(tenant, alias), source, tags_of(tenant, alias, base))


def create_params(tenant: str, alias: str, source: str, base: dict[str, str]) -> dict[str, Any]:
    wanted = want(tenant, alias, source, base)
    return {
        "inferenceProfileName": wanted.name,
        "modelSource": {"copyFrom": source},
        "tags": tag_list(dict(wanted.tags)),
        "clientRequestToken": wanted.client_request_token,
    }


@pytest.fixture
def client() -> Any:
    session = botocore.session.Session()
    return session.create_client(
        "bedrock", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


READS = {"ListInferenceProfiles", "ListTagsForResource"}


@pytest.fixture
def calls(client: Any) -> list[str]:
    """Every operation the client is asked to make, in order (recorded before the Stubber answers)."""
    made: list[str] = []

    def record(model: Any, **_: Any) -> None:
        made.append(model.name)

    client.meta.events.register("before-parameter-build.bedrock", record)
    return made


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def expect_listing(stub: Stubber, *pages: list[tuple[dict[str, Any], dict[str, str]]]) -> None:
    """ListInferenceProfiles pages (summary, tags), each "tm-" profile followed by its ListTagsForResource."""
    for i, page in enumerate(pages):
        params: dict[str, Any] = {"typeEquals": "APPLICATION"}
        if i:
            params["nextToken"] = f"page-{i}"
        response: dict[str, Any] = {"inferenceProfileSummaries": [s for s, _ in page]}
        if i + 1 < len(pages):
            response["nextToken"] = f"page-{i + 1}"
        stub.add_response("list_inference_profiles", response, params)
        for s, tags in page:
            if s["inferenceProfileName"].startswith("tm-"):
                stub.add_response(
                    "list_tags_for_resource", {"tags": tag_list(tags)}, {"resourceARN": s["inferenceProfileArn"]}
                )


def in_sync_listing() -> list[list[tuple[dict[str, Any], dict[str, str]]]]:
    """The three profiles as a previous run left them, over two pages, plus a profile that is not ours."""
    return [
        [
            (
                summary("tm-acme-claude-3-5-haiku", ACME_HAIKU, HAIKU_SRC),
                tags_of("acme", "claude-3-5-haiku", ACME_TAGS),
            ),
            (summary("someone-elses-profile", profile_arn("other0000001"), NOVA_SRC), {}),
        ],
        [
            (
                summary("tm-globex-claude-3-5-haiku", GLOBEX_HAIKU, HAIKU_SRC),
                tags_of("globex", "claude-3-5-haiku", GLOBEX_TAGS),
            ),
            (summary("tm-globex-nova-pro", GLOBEX_NOVA, NOVA_SRC), tags_of("globex", "nova-pro", GLOBEX_TAGS)),
        ],
    ]


# --- the scenarios ------------------------------------------------------------------------------------------


def test_creates_every_profile_from_nothing(client: Any, stubber: Stubber) -> None:
    # GIVEN no application inference profiles in the account
    expect_listing(stubber, [])
    for tenant, alias, src, base, arn in [
        ("acme", "claude-3-5-haiku", HAIKU_SRC, ACME_TAGS, ACME_HAIKU),
        ("globex", "claude-3-5-haiku", HAIKU_SRC, GLOBEX_TAGS, GLOBEX_HAIKU),
        ("globex", "nova-pro", NOVA_SRC, GLOBEX_TAGS, GLOBEX_NOVA),
    ]:
        stubber.add_response(
            "create_inference_profile",
            {"inferenceProfileArn": arn, "status": "ACTIVE"},
            create_params(tenant, alias, src, base),
        )
    # WHEN the sync is applied
    result = sync_profiles(client, registry(), MODELS, catalog=CATALOG, apply=True)
    # THEN three profiles were created with the tenants' cost-allocation tags, and the mapping lists them
    assert [(a.kind, a.status, a.name) for a in result.actions] == [
        (ActionKind.CREATE, ActionStatus.DONE, "tm-acme-claude-3-5-haiku"),
        (ActionKind.CREATE, ActionStatus.DONE, "tm-globex-claude-3-5-haiku"),
        (ActionKind.CREATE, ActionStatus.DONE, "tm-globex-nova-pro"),
    ]
    assert result.actions[0].set_tags == {
        "costCenter": "cc-42",
        "applicationId": "support-bot",
        "environment": "prod",
        "tenantId": "acme",
        "managedBy": "tenantmeter",
        "modelAlias": "claude-3-5-haiku",
    }
    assert result.profiles == {
        "acme": {"claude-3-5-haiku": ACME_HAIKU},
        "globex": {"claude-3-5-haiku": GLOBEX_HAIKU, "nova-pro": GLOBEX_NOVA},
    }
    assert result.exit_code == 0


def test_second_run_with_nothing_changed_makes_no_write_call(client: Any, stubber: Stubber, calls: list[str]) -> None:
    # GIVEN the profiles exactly as wanted (over two listing pages), and one profile that is not ours
    expect_listing(stubber, *in_sync_listing())
    # WHEN the sync is applied (the Stubber fails the test on any call not queued, i.e. on any write)
    result = sync_profiles(client, registry(), MODELS, catalog=CATALOG, apply=True)
    # THEN everything is unchanged and the profile that is not ours is not even mentioned
    assert [(a.kind, a.status) for a in result.actions] == [(ActionKind.UNCHANGED, ActionStatus.SKIPPED)] * 3
    assert set(calls) == READS and result.exit_code == 0
    assert result.profiles["globex"] == {"claude-3-5-haiku": GLOBEX_HAIKU, "nova-pro": GLOBEX_NOVA}


def test_tag_drift_is_corrected_without_touching_foreign_tags(client: Any, stubber: Stubber) -> None:
    # GIVEN acme moved to cost centre cc-99 and dropped its environment tag; someone added an "owner" tag
    reg = TenantRegistry.from_dict(
        {
            "tenants": [
                {"id": "acme", "tier": "premium", "tags": {"costCenter": "cc-99", "applicationId": "support-bot"}}
            ]
        }
    )
    have = {**tags_of("acme", "claude-3-5-haiku", ACME_TAGS), "owner": "platform-team"}
    expect_listing(stubber, [(summary("tm-acme-claude-3-5-haiku", ACME_HAIKU, HAIKU_SRC), have)])
    stubber.add_response(
        "tag_resource", {}, {"resourceARN": ACME_HAIKU, "tags": [{"key": "costCenter", "value": "cc-99"}]}
    )
    stubber.add_response("untag_resource", {}, {"resourceARN": ACME_HAIKU, "tagKeys": ["environment"]})
    # WHEN the sync is applied
    result = sync_profiles(client, reg, {"acme": ["claude-3-5-haiku"]}, catalog=CATALOG, apply=True)
    # THEN only the drifted cost tags changed ("owner" stays: it is not ours to remove)
    (action,) = result.actions
    assert (action.kind, action.status) == (ActionKind.UPDATE_TAGS, ActionStatus.DONE)
    assert action.set_tags == {"costCenter": "cc-99"} and action.remove_tag_keys == ("environment",)
    assert result.exit_code == 0


def test_name_conflicts_are_reported_and_left_alone(client: Any, stubber: Stubber) -> None:
    # GIVEN our name taken by a profile without managedBy, and a managed one that copies another model
    expect_listing(
        stubber,
        [
            (summary("tm-acme-claude-3-5-haiku", ACME_HAIKU, HAIKU_SRC), {"team": "ml", "tenantId": "acme"}),
            (
                summary(
                    "tm-globex-nova-pro",
                    GLOBEX_NOVA,
                    "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
                ),
                tags_of("globex", "nova-pro", GLOBEX_TAGS),
            ),
        ],
    )
    stubber.add_response(
        "create_inference_profile",
        {"inferenceProfileArn": GLOBEX_HAIKU, "status": "ACTIVE"},
        create_params("globex", "claude-3-5-haiku", HAIKU_SRC, GLOBEX_TAGS),
    )
    # WHEN the sync is applied
    result = sync_profiles(client, registry(), MODELS, catalog=CATALOG, apply=True)
    # THEN both conflicts are reported with the reason, not written, not deleted; the free name is created
    kinds = {a.name: (a.kind, a.status) for a in result.actions}
    assert kinds == {
        "tm-acme-claude-3-5-haiku": (ActionKind.CONFLICT, ActionStatus.SKIPPED),
        "tm-globex-claude-3-5-haiku": (ActionKind.CREATE, ActionStatus.DONE),
        "tm-globex-nova-pro": (ActionKind.CONFLICT, ActionStatus.SKIPPED),
    }
    reasons = {a.name: a.reason for a in result.actions}
    assert "without the managedBy=tenantmeter tag" in reasons["tm-acme-claude-3-5-haiku"]
    assert "copies amazon.nova-lite-v1:0, wanted amazon.nova-pro-v1:0" in reasons["tm-globex-nova-pro"]
    # AND the conflicting profiles are not put into the tenants' mapping
    assert result.profiles == {"acme": {}, "globex": {"claude-3-5-haiku": GLOBEX_HAIKU}}
    assert result.exit_code == 1


def test_one_failed_create_does_not_stop_the_others(client: Any, stubber: Stubber) -> None:
    # GIVEN nothing exists and the account hits a quota on acme's create
    expect_listing(stubber, [])
    stubber.add_client_error(
        "create_inference_profile",
        service_error_code="ServiceQuotaExceededException",
        service_message="Application inference profiles quota reached",
        http_status_code=400,
        expected_params=create_params("acme", "claude-3-5-haiku", HAIKU_SRC, ACME_TAGS),
    )
    stubber.add_response(
        "create_inference_profile",
        {"inferenceProfileArn": GLOBEX_HAIKU, "status": "ACTIVE"},
        create_params("globex", "claude-3-5-haiku", HAIKU_SRC, GLOBEX_TAGS),
    )
    stubber.add_response(
        "create_inference_profile",
        {"inferenceProfileArn": GLOBEX_NOVA, "status": "ACTIVE"},
        create_params("globex", "nova-pro", NOVA_SRC, GLOBEX_TAGS),
    )
    # WHEN the sync is applied
    result = sync_profiles(client, registry(), MODELS, catalog=CATALOG, apply=True)
    # THEN globex's profiles exist, acme's failure says why, and the exit status is non-zero
    assert [a.status for a in result.actions] == [ActionStatus.FAILED, ActionStatus.DONE, ActionStatus.DONE]
    assert result.failed[0].error == "ServiceQuotaExceededException: Application inference profiles quota reached"
    assert result.profiles == {"acme": {}, "globex": {"claude-3-5-haiku": GLOBEX_HAIKU, "nova-pro": GLOBEX_NOVA}}
    assert result.exit_code == 1
    assert "ServiceQuotaExceededException" in render_text(result)


def test_unwanted_managed_profiles_are_deleted_unless_still_routed_to(client: Any, stubber: Stubber) -> None:
    # GIVEN the wanted profiles plus: a managed profile of a tenant that left, a managed profile of a model acme
    # no longer wants but its tenants file still routes to, and a "tm-" profile that is not ours
    gone = profile_arn("initechhaiku")
    still_routed = profile_arn("acmenova0001")
    listing = in_sync_listing()
    listing[1] += [
        (summary("tm-initech-claude-3-5-haiku", gone, HAIKU_SRC), tags_of("initech", "claude-3-5-haiku", {})),
        (summary("tm-acme-nova-pro", still_routed, NOVA_SRC), tags_of("acme", "nova-pro", ACME_TAGS)),
        (summary("tm-hand-made", profile_arn("handmade0001"), NOVA_SRC), {"owner": "someone"}),
    ]
    expect_listing(stubber, *listing)
    stubber.add_response("delete_inference_profile", {}, {"inferenceProfileIdentifier": gone})
    reg = registry(acme={"claude-3-5-haiku": ACME_HAIKU, "nova-pro": still_routed})
    # WHEN the sync is applied
    result = sync_profiles(client, reg, MODELS, catalog=CATALOG, apply=True)
    # THEN only the departed tenant's profile is deleted; the routed one is kept and flagged
    extra = [(a.kind, a.status, a.tenant_id, a.model_alias) for a in result.actions[3:]]
    assert extra == [
        (ActionKind.DELETE, ActionStatus.DONE, "initech", "claude-3-5-haiku"),
        (ActionKind.KEEP, ActionStatus.SKIPPED, "acme", "nova-pro"),
    ]
    assert "still routes traffic" in result.actions[4].reason
    assert result.exit_code == 1


def test_dry_run_lists_the_plan_and_makes_no_write_call(client: Any, stubber: Stubber, calls: list[str]) -> None:
    # GIVEN one profile with drifted tags, one missing, and one unwanted managed profile
    drifted = {**tags_of("acme", "claude-3-5-haiku", ACME_TAGS), "costCenter": "cc-old"}
    gone = profile_arn("initechhaiku")
    expect_listing(
        stubber,
        [
            (summary("tm-acme-claude-3-5-haiku", ACME_HAIKU, HAIKU_SRC), drifted),
            (summary("tm-globex-nova-pro", GLOBEX_NOVA, NOVA_SRC), tags_of("globex", "nova-pro", GLOBEX_TAGS)),
            (summary("tm-initech-claude-3-5-haiku", gone, HAIKU_SRC), tags_of("initech", "claude-3-5-haiku", {})),
        ],
    )
    # WHEN the sync runs without apply (only the reads above are queued: any write would fail the test)
    result = sync_profiles(client, registry(), MODELS, catalog=CATALOG)
    # THEN the plan lists each write as planned, and the exit status says "changes pending"
    assert [(a.kind, a.status, a.name) for a in result.actions] == [
        (ActionKind.UPDATE_TAGS, ActionStatus.PLANNED, "tm-acme-claude-3-5-haiku"),
        (ActionKind.CREATE, ActionStatus.PLANNED, "tm-globex-claude-3-5-haiku"),
        (ActionKind.UNCHANGED, ActionStatus.SKIPPED, "tm-globex-nova-pro"),
        (ActionKind.DELETE, ActionStatus.PLANNED, "tm-initech-claude-3-5-haiku"),
    ]
    assert result.exit_code == 3 and result.applied is False
    assert set(calls) == READS
    text = render_text(result)
    assert "dry run: no write calls made" in text
    as_json = json.loads(render_json(result))
    assert as_json["exit_code"] == 3
    assert as_json["actions"][0]["set_tags"] == {"costCenter": "cc-42"}
    # AND the mapping holds the profiles that exist (the planned create has no ARN yet)
    assert result.profiles == {"acme": {"claude-3-5-haiku": ACME_HAIKU}, "globex": {"nova-pro": GLOBEX_NOVA}}


def test_listing_errors_stop_before_any_write(client: Any, stubber: Stubber) -> None:
    stubber.add_client_error("list_inference_profiles", service_error_code="AccessDeniedException")
    with pytest.raises(ProfileSyncError, match="AccessDeniedException"):
        sync_profiles(client, registry(), MODELS, catalog=CATALOG, apply=True)


# --- the pure parts -----------------------------------------------------------------------------------------


def test_system_inference_profile_sources_match_their_regional_models() -> None:
    # GIVEN a profile copying the US cross-region profile of Claude Sonnet 4, listed with its regional models
    wanted = want("acme", "claude-sonnet-4", SONNET4_PROFILE, ACME_TAGS)
    have = ExistingProfile(
        wanted.name,
        profile_arn("acmesonnet41"),
        frozenset({"anthropic.claude-sonnet-4-20250514-v1:0"}),
        dict(wanted.tags),
    )
    # THEN it is recognised as ours and unchanged
    (action,) = plan_profiles([wanted], [have])
    assert action.kind is ActionKind.UNCHANGED


def test_profile_names_are_deterministic_and_valid() -> None:
    assert profile_name("acme", "claude-3-5-haiku") == "tm-acme-claude-3-5-haiku"
    # dots are not allowed in profile names: a cleaned name plus a hash of the pair, stable across runs
    dotted = profile_name("acme", "claude-3.5-haiku")
    assert dotted.startswith("tm-acme-claude-3-5-haiku-") and dotted == profile_name("acme", "claude-3.5-haiku")
    assert dotted != profile_name("acme", "claude-3-5-haiku")
    long = profile_name("t" * 64, "claude-3-5-sonnet-v2")
    assert len(long) == 64 and long.startswith("tm-ttt")


def test_two_pairs_sharing_a_name_are_refused() -> None:
    reg = TenantRegistry.from_dict({"tenants": [{"id": "a-b", "tier": "free"}, {"id": "a", "tier": "free"}]})
    with pytest.raises(ProfileSyncError, match="would share the profile name 'tm-a-b-nova-pro'"):
        desired_profiles(
            reg,
            {"a-b": ["nova-pro"], "a": ["b-nova-pro"]},
            catalog=CATALOG,
            region="us-east-1",
            sources={"b-nova-pro": "amazon.nova-pro-v1:0"},
        )


def test_sources() -> None:
    assert source_arn("nova-pro", catalog=CATALOG, region="eu-west-1") == (
        "arn:aws:bedrock:eu-west-1::foundation-model/amazon.nova-pro-v1:0"
    )
    explicit = {"claude-sonnet-4": SONNET4_PROFILE, "s4": "us.anthropic.claude-sonnet-4-20250514-v1:0"}
    assert source_arn("claude-sonnet-4", catalog=CATALOG, region="us-east-1", sources=explicit) == SONNET4_PROFILE
    with pytest.raises(ProfileSyncError, match="not in the price catalog"):
        source_arn("gpt-x", catalog=CATALOG, region="us-east-1")
    with pytest.raises(ProfileSyncError, match="give its full ARN"):
        source_arn("s4", catalog=CATALOG, region="us-east-1", sources=explicit)


def test_reserved_and_unacceptable_tags_are_refused() -> None:
    for tags, message in [
        ({"managedBy": "me"}, "reserved"),
        ({"tenantId": "someone-else"}, "tenant's own id"),
        ({"costCenter": "cc#42"}, "characters Bedrock does not accept"),
    ]:
        reg = TenantRegistry.from_dict({"tenants": [{"id": "acme", "tier": "free", "tags": tags}]})
        with pytest.raises(ProfileSyncError, match=message):
            desired_profiles(reg, {"acme": ["nova-pro"]}, catalog=CATALOG, region="us-east-1")
    with pytest.raises(ProfileSyncError, match="not in the tenants file"):
        desired_profiles(registry(), {"nobody": ["nova-pro"]}, catalog=CATALOG, region="us-east-1")


def test_models_from_registry_and_toml_output() -> None:
    reg = registry(acme={"claude-3-5-haiku": ACME_HAIKU})
    assert models_from_registry(reg) == {"acme": ("claude-3-5-haiku",), "globex": ()}
    result = ProfileSyncResult((), False, {"acme": {"claude-3-5-haiku": ACME_HAIKU}, "globex": {}})
    result_toml = render_tenants_toml(result)
    assert result_toml == f'# tenant acme\ninference_profiles = {{ "claude-3-5-haiku" = "{ACME_HAIKU}" }}\n'
    assert tomllib.loads(result_toml.split("\n", 1)[1])["inference_profiles"] == {"claude-3-5-haiku": ACME_HAIKU}
