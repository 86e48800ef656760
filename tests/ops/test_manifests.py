"""The kustomize overlays, rendered as `kubectl apply -k` would: valid against the Kubernetes
schema, and holding the properties the services rely on (non-root, read-only roots, gRPC probes,
the signer's headless Service, who may call whom, secrets only by reference)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from emeterai.v1 import distributor_service_pb2
from services.cli import build_parser
from services.common.settings import (
    AuthSettings,
    CommonSettings,
    GatewaySettings,
    QuotaSettings,
    SettingsError,
    SignerSettings,
    load_settings,
)
from services.gateway.edge import PURCHASE_METHODS, PURCHASES, http_bulkhead

from .conftest import K8S, validate

Objects = list[dict[str, Any]]
Overlay = tuple[str, Objects, str]

SERVICES = ("auth", "quota", "signer", "gateway")
SETTINGS: dict[str, type[CommonSettings]] = {
    "auth": AuthSettings,
    "quota": QuotaSettings,
    "signer": SignerSettings,
    "gateway": GatewaySettings,
}
# Variables whose values are secret: they may only come from a Secret.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN$|_PIN$|DATABASE_URL|REDIS_URL")
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def of_kind(objects: Objects, kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def pod_specs(objects: Objects) -> list[tuple[str, dict[str, Any]]]:
    return [(o["metadata"]["name"], o["spec"]["template"]["spec"]) for o in objects if o["kind"] in WORKLOADS]


def container(objects: Objects, service: str) -> dict[str, Any]:
    spec = named(objects, "Deployment", f"emeterai-{service}")["spec"]["template"]["spec"]
    (only,) = spec["containers"]
    return only


def environment(objects: Objects, service: str) -> dict[str, Any]:
    """A service's variables as its container gets them: the ConfigMap, then its own env."""
    c = container(objects, service)
    env: dict[str, Any] = {}
    for source in c.get("envFrom", []):
        env |= named(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
    for variable in c.get("env", []):
        env[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return env


def test_the_overlay_is_valid_kubernetes(overlay: Overlay, tmp_path: Path) -> None:
    validate(overlay[2], tmp_path)


def test_every_pod_runs_locked_down(overlay: Overlay) -> None:
    for name, spec in pod_specs(overlay[1]):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        # Service links would inject EMETERAI_<SERVICE>_PORT and the like into our settings' prefix.
        assert spec["enableServiceLinks"] is False, name
        for c in spec["containers"] + spec.get("initContainers", []):
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert {"requests", "limits"} <= set(c["resources"]), name


def test_what_our_services_write_is_on_volumes(overlay: Overlay) -> None:
    objects = overlay[1]
    for name, spec in pod_specs(objects):
        for c in spec["containers"]:
            if not c["image"].rsplit(":", 1)[0].endswith("/emeterai"):
                continue
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert {"/tmp", "/var/lib/emeterai"} <= mounts, name
    for service in SERVICES:
        env = environment(objects, service)
        mounts = {m["mountPath"] for m in container(objects, service)["volumeMounts"]}
        assert env["EMETERAI_DATA_DIR"] in mounts
        written = [env[v] for v in ("EMETERAI_DOCUMENT_STORE_DIR", "EMETERAI_JOB_STORE_DIR") if v in env]
        for path in written:
            assert any(path.startswith(m + "/") for m in mounts), path


def test_services_are_probed_over_grpc_health(overlay: Overlay) -> None:
    objects = overlay[1]
    for service in SERVICES:
        c = container(objects, service)
        grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": grpc_port}, (service, probe)
        assert {"name": "metrics", "containerPort": 9090} in c["ports"], service
        assert environment(objects, service)["EMETERAI_METRICS_ADDRESS"] == "0.0.0.0:9090"


def test_pods_outlast_their_drain(overlay: Overlay) -> None:
    objects = overlay[1]
    for service in SERVICES:
        env = environment(objects, service)
        drain = float(env["EMETERAI_SHUTDOWN_NOTICE_S"]) + float(env["EMETERAI_SHUTDOWN_GRACE_S"])
        spec = named(objects, "Deployment", f"emeterai-{service}")["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > drain, service


def test_the_gateway_finds_every_signer_pod_through_the_headless_service(overlay: Overlay) -> None:
    objects = overlay[1]
    signer = named(objects, "Service", "emeterai-signer")
    assert signer["spec"]["clusterIP"] == "None"
    (port,) = signer["spec"]["ports"]
    # host:port, which the gateway's pool resolves to every pod; not dns:///, which gRPC would
    # resolve on its own into one channel the pool cannot balance.
    assert environment(objects, "gateway")["EMETERAI_SIGNER_ADDRESSES"] == f"emeterai-signer:{port['port']}"
    assert signer["spec"]["selector"] == {"app.kubernetes.io/name": "signer"}


def test_services_dial_each_other_by_service_name(overlay: Overlay) -> None:
    objects = overlay[1]
    for service, variable in (("auth", "EMETERAI_AUTH_ADDRESS"), ("quota", "EMETERAI_QUOTA_ADDRESS")):
        (port,) = named(objects, "Service", f"emeterai-{service}")["spec"]["ports"]
        for caller in SERVICES:
            if caller != service:
                assert environment(objects, caller)[variable] == f"emeterai-{service}:{port['port']}"
        assert environment(objects, service)[variable] == f"0.0.0.0:{port['port']}"


def test_signer_workers_match_the_cpu_limit(overlay: Overlay) -> None:
    c = container(overlay[1], "signer")
    workers = int(environment(overlay[1], "signer")["EMETERAI_SIGNER_WORKERS"])
    assert workers == int(c["resources"]["limits"]["cpu"])


def test_autoscaled_deployments_leave_the_count_to_the_autoscaler(overlay: Overlay) -> None:
    objects = overlay[1]
    scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in of_kind(objects, "HorizontalPodAutoscaler")}
    assert "emeterai-signer" in scaled
    if overlay[0] == "prod":
        assert "emeterai-gateway" in scaled
    for name in scaled:
        assert "replicas" not in named(objects, "Deployment", name)["spec"], name
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        assert pdb["spec"]["maxUnavailable"] == 1


def test_secrets_are_only_referenced(overlay: Overlay) -> None:
    objects = overlay[1]
    assert of_kind(objects, "Secret") == []
    for config in of_kind(objects, "ConfigMap"):
        leaked = [key for key in config.get("data", {}) if SECRET_NAME.search(key)]
        assert leaked == [], config["metadata"]["name"]
    for name, spec in pod_specs(objects):
        for c in spec["containers"]:
            for variable in c.get("env", []):
                if SECRET_NAME.search(variable["name"]):
                    assert "secretKeyRef" in variable.get("valueFrom", {}), (name, variable["name"])


def referenced_secrets(objects: Objects) -> set[str]:
    found = set()
    for _, spec in pod_specs(objects):
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                found.add(volume["secret"]["secretName"])
        for c in spec["containers"]:
            for variable in c.get("env", []):
                if "secretKeyRef" in variable.get("valueFrom", {}):
                    found.add(variable["valueFrom"]["secretKeyRef"]["name"])
    for ingress in of_kind(objects, "Ingress"):
        found |= {tls["secretName"] for tls in ingress["spec"].get("tls", [])}
    return found


def test_the_readme_says_how_to_create_every_secret(overlay: Overlay) -> None:
    readme = (K8S / "README.md").read_text()
    for secret in referenced_secrets(overlay[1]):
        assert secret in readme, secret


def test_images_are_pinned(overlay: Overlay) -> None:
    for name, spec in pod_specs(overlay[1]):
        for c in spec["containers"]:
            repository, _, tag = c["image"].rpartition(":")
            assert repository and "/" not in tag and tag not in ("", "latest"), (name, c["image"])


def allowed_sources(objects: Objects, target: str, port: str) -> set[str]:
    """Who the NetworkPolicies let reach pods named target on the named port: pod names,
    "namespace:<name>", or "anyone"."""
    labels = {"app.kubernetes.io/name": target, "app.kubernetes.io/part-of": "emeterai"}
    sources: set[str] = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if not selector.items() <= labels.items():
            continue
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress", []):
            if "ports" in rule and port not in {p["port"] for p in rule["ports"]}:
                continue
            peers = rule.get("from")
            if not peers:
                sources.add("anyone")
            for peer in peers or []:
                if "namespaceSelector" in peer:
                    sources.add(
                        "namespace:" + peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    )
                else:
                    sources.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
    return sources


def test_network_policies_allow_only_the_calls_the_code_makes(overlay: Overlay) -> None:
    objects = overlay[1]
    deny = named(objects, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert allowed_sources(objects, "gateway", "http") == {"anyone"}
    assert allowed_sources(objects, "gateway", "grpc") == {"anyone"}
    assert allowed_sources(objects, "signer", "grpc") == {"gateway"}
    assert allowed_sources(objects, "quota", "grpc") == {"gateway"}
    assert allowed_sources(objects, "auth", "grpc") == {"gateway", "quota", "signer"}
    for service in SERVICES:
        assert allowed_sources(objects, service, "metrics") == {"namespace:monitoring"}
    if overlay[0] == "dev":
        assert allowed_sources(objects, "postgres", "postgres") == {"auth", "quota", "migrate"}
        assert allowed_sources(objects, "redis", "redis") == {"auth", "quota", "signer", "gateway"}
    else:
        assert of_kind(objects, "StatefulSet") == []


MAIN_LANE, PURCHASES_LANE = "emeterai-gateway", "emeterai-gateway-purchases"


def routed_to(ingress: dict[str, Any], path: str) -> dict[str, Any]:
    """The backend ingress-nginx picks for a request path: an Exact match, else the longest Prefix
    that matches whole path segments."""
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]
    for p in paths:
        if p["pathType"] == "Exact" and p["path"] == path:
            return p["backend"]["service"]
    prefixes = [
        p
        for p in paths
        if p["pathType"] == "Prefix"
        and (p["path"] == "/" or path == p["path"] or path.startswith(p["path"].rstrip("/") + "/"))
    ]
    return max(prefixes, key=lambda p: len(p["path"]))["backend"]["service"]


def test_the_grpc_ingress_speaks_grpc_to_the_gateway(overlay: Overlay) -> None:
    ingress = named(overlay[1], "Ingress", "emeterai-grpc")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    (rule,) = ingress["spec"]["rules"]
    for path in rule["http"]["paths"]:
        assert path["backend"]["service"]["name"] in (MAIN_LANE, PURCHASES_LANE)
        assert path["backend"]["service"]["port"] == {"name": "grpc"}


def test_purchases_run_in_a_gateway_lane_of_their_own(overlay: Overlay) -> None:
    """Two Deployments of the same gateway, each Service on its own pods only, and the ingress
    sends exactly what the gateway's purchases bulkhead takes to the purchases lane."""
    objects = overlay[1]
    main, purchases = (named(objects, "Deployment", name) for name in (MAIN_LANE, PURCHASES_LANE))
    (main_container,) = main["spec"]["template"]["spec"]["containers"]
    (purchases_container,) = purchases["spec"]["template"]["spec"]["containers"]
    for key in ("image", "command", "env", "envFrom", "ports", "volumeMounts"):
        assert main_container[key] == purchases_container[key], key
    selectors = []
    for deployment in (main, purchases):
        service = named(objects, "Service", deployment["metadata"]["name"])
        selector = service["spec"]["selector"]
        assert selector == deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        selectors.append(selector)
    # Neither Service's selector matches the other lane's pods.
    assert not selectors[0].items() <= purchases["spec"]["template"]["metadata"]["labels"].items()
    assert not selectors[1].items() <= main["spec"]["template"]["metadata"]["labels"].items()

    web = named(objects, "Ingress", "emeterai-http")
    requests = [
        ("POST", "/v1/orders"),
        ("POST", "/v1/orders/ord_1/refund"),
        ("POST", "/v1/payments/webhooks/sandbox"),
        ("POST", "/v1/payments/ord_1/pay"),
        ("POST", "/v1/stamps"),
        ("POST", "/v1/verify"),
        ("GET", "/v1/stamps/stp_1/document"),
        ("GET", "/v1/account/balance"),
        ("GET", "/"),
    ]
    for method, path in requests:
        lane = PURCHASES_LANE if http_bulkhead(method, path) == PURCHASES else MAIN_LANE
        assert routed_to(web, path)["name"] == lane, path
    grpc_ingress = named(objects, "Ingress", "emeterai-grpc")
    for method in distributor_service_pb2.DESCRIPTOR.services_by_name["DistributorService"].methods:
        lane = PURCHASES_LANE if method.name in PURCHASE_METHODS else MAIN_LANE
        assert routed_to(grpc_ingress, f"/emeterai.v1.DistributorService/{method.name}")["name"] == lane


def stand_in(variable: str, value: Any) -> str:
    """The value a variable would have in the pod; a Secret's is a stand-in of the right shape."""
    if isinstance(value, str):
        return value
    if variable.endswith("DATABASE_URL"):
        return "postgresql://emeterai:password@db.example:5432/emeterai"
    if variable.endswith("REDIS_URL"):
        return "rediss://:password@redis.example:6379/0"
    return "s" * 48


def test_each_service_starts_with_the_overlay_settings(
    overlay: Overlay, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, objects, _ = overlay
    for service in SERVICES:
        env = {k: stand_in(k, v) for k, v in environment(objects, service).items()}
        with monkeypatch.context() as patched:
            for variable in [v for v in os.environ if v.startswith("EMETERAI_")]:
                patched.delenv(variable)
            for variable, value in env.items():
                patched.setenv(variable, value)
            try:
                settings = load_settings(SETTINGS[service])
            except SettingsError as exc:
                pytest.fail(f"{name} overlay, {service}: {exc}")
        assert settings.mode == ("production" if name == "prod" else "dev")
        if isinstance(settings, AuthSettings) and name == "prod":
            # The dev outbox is refused in production when the domain is built, not by the settings.
            assert settings.notifier != "dev"


def test_the_migration_job_runs_emeterai_migrate(overlay: Overlay) -> None:
    job = named(overlay[1], "Job", "emeterai-migrate")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"][:2] == ["emeterai", "migrate"]
    expanded = shlex.split(" ".join(c["command"][1:]).replace("$(", "").replace(")", ""))
    args = build_parser().parse_args(expanded)
    assert args.auth_database_url == "AUTH_DATABASE_URL"
    assert args.quota_database_url == "QUOTA_DATABASE_URL"
    defined = {v["name"] for v in c["env"]}
    assert {"AUTH_DATABASE_URL", "QUOTA_DATABASE_URL"} <= defined
