"""The Kubernetes manifests: schema validation offline, and what a reviewer checks."""

from __future__ import annotations

import copy
import functools
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
Manifest = dict[str, Any]

SERVICES = ("gateway", "auth", "scheduler", "publisher")
PORTS = {"gateway": 8080, "auth": 8081, "scheduler": 8082, "publisher": 8083}
# The Kubernetes versions the built-in kinds are validated against: the one the project's
# kubectl speaks and the newest one kubernetes-validate ships (nothing removed since).
K8S_VERSIONS = ("1.32", kubernetes_validate.latest_version())
CRDS = K8S / "crds"
# Names that hold secrets wherever they appear: never a literal value, never in a ConfigMap.
SECRET_NAME = re.compile(
    r"(PASSWORD|PASS$|SECRET|TOKEN|KEYS?$|CREDENTIAL|DATABASE_URL|AMQP_URL|DSN)", re.IGNORECASE
)
POD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}


FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# ----------------------------------------------------------------------------- helpers


def by_kind(objs: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: list[Manifest], kind: str, name: str) -> Manifest:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(obj: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def containers(obj: Manifest) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def all_containers(objs: list[Manifest]) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    for obj in objs:
        if obj["kind"] in POD_KINDS:
            for c in containers(obj):
                yield obj, c


def service_deployment(objs: list[Manifest], svc: str) -> Manifest:
    return named(objs, "Deployment", f"codiv-{svc}")


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def config_data(objs: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = named(objs, "ConfigMap", "codiv-config")["data"]
    return data


def ident(obj: Manifest) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@functools.cache
def settings_class(svc: str) -> Any:
    return importlib.import_module(f"codiv_{svc}.settings").Settings


def settings_fields(svc: str) -> dict[str, Any]:
    """ENV_NAME -> pydantic FieldInfo of a service's Settings."""
    fields = settings_class(svc).model_fields
    return {name.upper(): f for name, f in fields.items()}


def is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def quantity_bytes(q: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * factor
    return float(q)


# ----------------------------------------------------------------------------- validation


def test_both_overlays_render_with_kustomize(renders: dict[str, list[Manifest]]) -> None:
    for name in OVERLAYS:
        kinds = {o["kind"] for o in renders[name]}
        assert {"Deployment", "Service", "Job", "ConfigMap", "PodDisruptionBudget"} <= kinds
        assert {"NetworkPolicy", "Ingress", "Namespace"} <= kinds
        for obj in renders[name]:
            if obj["kind"] != "Namespace":
                assert obj["metadata"].get("namespace") == "codiv", ident(obj)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_validate_against_kubernetes_schemas(
    renders: dict[str, list[Manifest]], overlay: str, version: str
) -> None:
    checked = 0
    for obj in renders[overlay]:
        group = obj["apiVersion"].split("/")[0]
        if "." in group and not group.endswith(".k8s.io"):
            continue  # a custom resource: validated against its operator's CRD below
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {ident(obj)} invalid for Kubernetes {version}: {path}: {exc}")
        checked += 1
    assert checked >= 20


def _strict(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields, as the API server does (kubectl's strict
    field validation): objects with ``properties`` get ``additionalProperties: false``
    unless the CRD preserves unknown fields there."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema, from the vendored CRDs."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*/*.yaml")):
        crd = yaml.load(path.read_text(), Loader=FastLoader)
        assert crd["kind"] == "CustomResourceDefinition", path
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                out[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return out


def test_vendored_crds_carry_their_licences() -> None:
    for path in sorted(CRDS.glob("*/*.yaml")):
        assert (path.parent / "LICENSE-upstream").stat().st_size > 1000, path
    assert (CRDS / "README.md").exists()
    kinds = {kind for _, kind in crd_schemas()}
    assert {"RabbitmqCluster", "Cluster", "ScaledObject", "ServiceMonitor"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_operator_crds(
    renders: dict[str, list[Manifest]], overlay: str
) -> None:
    schemas = crd_schemas()
    custom = [
        o
        for o in renders[overlay]
        if "." in o["apiVersion"].split("/")[0]
        and not o["apiVersion"].split("/")[0].endswith(".k8s.io")
    ]
    for obj in custom:
        key = (obj["apiVersion"], obj["kind"])
        assert key in schemas, f"{ident(obj)}: no vendored CRD for {key} in deploy/k8s/crds"
        try:
            jsonschema.Draft7Validator(schemas[key]).validate(obj)
        except jsonschema.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {ident(obj)} invalid against its CRD: {path}: {exc.message}")
    if overlay == "prod":
        kinds = sorted(o["kind"] for o in custom)
        assert kinds == [
            "Cluster",
            "RabbitmqCluster",
            "ScaledObject",
            "ServiceMonitor",
            "ServiceMonitor",
        ]


def test_crd_validation_rejects_a_typo() -> None:
    """The strict CRD check is not a rubber stamp: an unknown field fails it."""
    schema = crd_schemas()[("rabbitmq.com/v1beta1", "RabbitmqCluster")]
    bad = {
        "apiVersion": "rabbitmq.com/v1beta1",
        "kind": "RabbitmqCluster",
        "metadata": {"name": "x"},
        "spec": {"replicas": 3, "replica": 3},
    }
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        jsonschema.Draft7Validator(schema).validate(bad)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x"},
                "dataa": {},
            },
            "1.32",
            strict=True,
        )


# ----------------------------------------------------------------------------- reviewer checks


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_hardened_limited_and_probed(
    renders: dict[str, list[Manifest]], overlay: str
) -> None:
    for obj, c in all_containers(renders[overlay]):
        where = f"{overlay}: {ident(obj)} container {c['name']}"
        pod = pod_spec(obj)
        psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, where
        # Non-root: enforced by the kubelet, and a numeric non-zero uid.
        assert csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, where
        assert csc.get("runAsUser", psc.get("runAsUser", 0)) > 0, where
        assert csc.get("readOnlyRootFilesystem") is True, where
        assert csc.get("allowPrivilegeEscalation") is False, where
        assert not csc.get("privileged", False), where
        assert "ALL" in csc.get("capabilities", {}).get("drop", []), where
        assert not csc.get("capabilities", {}).get("add"), where
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{where}: {kind}"
        if obj["kind"] != "Job":  # a run-to-completion pod receives no traffic
            assert "livenessProbe" in c, where
            assert "readinessProbe" in c, where
        image = c["image"]
        tag = image.rsplit("@", 1)[0].rsplit("/", 1)[-1]
        assert ":" in tag or "@sha256:" in image, f"{where}: image {image} has no tag"
        assert not tag.endswith(":latest"), f"{where}: image {image} uses latest"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_probe_healthz_and_readyz_and_run_their_command(
    renders: dict[str, list[Manifest]], overlay: str
) -> None:
    objs = renders[overlay]
    images = set()
    for svc in SERVICES:
        dep = service_deployment(objs, svc)
        (c,) = pod_spec(dep)["containers"]
        images.add(c["image"])
        assert c["command"] == [f"codiv-{svc}"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        (port,) = c["ports"]
        assert port["name"] == "http"
        assert (
            port["containerPort"]
            == PORTS[svc]
            == settings_class(svc).model_fields["port"].get_default(call_default_factory=True)
        )
        assert env_of(c)["PORT"]["value"] == str(PORTS[svc])
        assert {"configMapRef": {"name": "codiv-config"}} in c["envFrom"]
        service = named(objs, "Service", f"codiv-{svc}")
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": f"codiv-{svc}"}
        assert service["spec"]["ports"][0]["port"] == PORTS[svc]
    assert config_data(objs)["HOST"] == "0.0.0.0"  # pods listen on all interfaces
    (image,) = images  # one image for every service
    assert image.split(":")[-1] == "0.1.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_covers_the_services_shutdown(
    renders: dict[str, list[Manifest]], overlay: str
) -> None:
    """SIGTERM drains HTTP (SHUTDOWN_TIMEOUT), then the consumer (SHUTDOWN_TIMEOUT), then
    closes pools (<= 10 s, codiv_common.runtime); the preStop sleep comes before it all."""
    shutdown = float(config_data(renders[overlay])["SHUTDOWN_TIMEOUT"])
    for svc in SERVICES:
        dep = service_deployment(renders[overlay], svc)
        (c,) = pod_spec(dep)["containers"]
        sleep = c["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[0] == "sleep"
        needed = float(sleep[1]) + 2 * shutdown + 10
        assert pod_spec(dep)["terminationGracePeriodSeconds"] > needed, svc


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_only_from_the_secret(
    renders: dict[str, list[Manifest]], base_objects: list[Manifest], overlay: str
) -> None:
    template = named(base_objects, "Secret", "codiv-secrets")
    keys = set(template["stringData"])
    assert all(v == "" for v in template["stringData"].values()), "the template has values"
    objs = renders[overlay]
    for obj, c in all_containers(objs):
        where = f"{overlay}: {ident(obj)} container {c['name']}"
        codiv = obj["metadata"]["name"] in {f"codiv-{s}" for s in SERVICES} | {"codiv-migrate"}
        for env in c.get("env", []):
            if SECRET_NAME.search(env["name"]):
                assert "value" not in env, f"{where}: {env['name']} is a literal"
                assert "secretKeyRef" in env.get("valueFrom", {}), f"{where}: {env['name']}"
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and codiv:
                assert ref["name"] == "codiv-secrets", f"{where}: {env['name']}"
                assert ref["key"] in keys, f"{where}: {ref['key']} not in the template"
        for source in c.get("envFrom", []):
            assert "secretRef" not in source, f"{where}: envFrom a Secret exposes all of it"
    for cm in by_kind(objs, "ConfigMap"):
        for key in cm.get("data", {}):
            assert not SECRET_NAME.search(key), f"{overlay}: ConfigMap key {key} looks secret"
    secrets = {s["metadata"]["name"]: s for s in by_kind(objs, "Secret")}
    if overlay == "prod":
        assert secrets == {}, "production must not render any Secret (values are out of band)"
    else:
        assert set(secrets["codiv-secrets"]["data"]) == keys


def test_every_secret_setting_is_wired_from_the_secret(
    renders: dict[str, list[Manifest]],
) -> None:
    """Each service's SecretStr settings reach it from codiv-secrets: a secret setting a
    service adds later fails here until the Deployment (and the template) carry it."""
    for overlay in OVERLAYS:
        for svc in SERVICES:
            (c,) = pod_spec(service_deployment(renders[overlay], svc))["containers"]
            env = env_of(c)
            for name, field in settings_fields(svc).items():
                if is_secret(field.annotation):
                    assert name in env, f"{overlay}: codiv-{svc} does not get {name}"
                    assert "secretKeyRef" in env[name].get("valueFrom", {}), name


def test_every_configured_variable_is_a_setting(renders: dict[str, list[Manifest]]) -> None:
    """No typo survives: each variable a Deployment or the ConfigMap sets is a field of the
    Settings of a service that receives it."""
    for overlay in OVERLAYS:
        objs = renders[overlay]
        known_anywhere = set().union(*(settings_fields(s) for s in SERVICES))
        for key in config_data(objs):
            assert key in known_anywhere, f"ConfigMap key {key} is no service's setting"
        for svc in SERVICES:
            (c,) = pod_spec(service_deployment(objs, svc))["containers"]
            for name in env_of(c):
                assert name in settings_fields(svc), f"codiv-{svc}: {name} is not a setting"
            for name, field in settings_fields(svc).items():
                if field.is_required():
                    assert name in env_of(c) or name in config_data(objs), (svc, name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_a_pdb_and_a_network_policy(
    renders: dict[str, list[Manifest]], overlay: str
) -> None:
    objs = renders[overlay]
    pdbs = {p["metadata"]["name"]: p for p in by_kind(objs, "PodDisruptionBudget")}
    policies = by_kind(objs, "NetworkPolicy")
    for svc in SERVICES:
        labels = pod_spec_labels(service_deployment(objs, svc))
        pdb = pdbs[f"codiv-{svc}"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["spec"].get("maxUnavailable") == 1
        selecting = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        assert selecting, f"no NetworkPolicy selects codiv-{svc}"
        assert all("Ingress" in p["spec"]["policyTypes"] for p in selecting)


def pod_spec_labels(obj: Manifest) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and value in expr["values"]:
            return False
        if expr["operator"] == "Exists" and value is None:
            return False
    return True


def allowed_callers(objs: list[Manifest], svc: str) -> tuple[set[str], set[str], bool]:
    """(pod components, namespaces, open to all) allowed to reach codiv-<svc>'s pods."""
    labels = pod_spec_labels(service_deployment(objs, svc))
    components: set[str] = set()
    namespaces: set[str] = set()
    open_to_all = False
    for policy in by_kind(objs, "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            if not peers:
                open_to_all = True
            for peer in peers or []:
                if "ipBlock" in peer:
                    open_to_all = True
                elif "namespaceSelector" in peer:
                    assert "podSelector" not in peer
                    ns = peer["namespaceSelector"].get("matchLabels", {})
                    namespaces.add(ns.get("kubernetes.io/metadata.name", "*"))
                else:
                    for other in SERVICES:
                        other_labels = pod_spec_labels(service_deployment(objs, other))
                        if selects(peer["podSelector"], other_labels):
                            components.add(other)
    return components, namespaces, open_to_all


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_expose_only_gateway_and_callback(
    renders: dict[str, list[Manifest]], overlay: str
) -> None:
    objs = renders[overlay]
    expected = {
        # service: (codiv pods allowed, namespaces allowed)
        "gateway": (set(), {"ingress-nginx", "monitoring"}),
        "auth": ({"publisher"}, {"ingress-nginx", "monitoring"}),
        "scheduler": (set(), {"monitoring"}),
        "publisher": (set(), {"monitoring"}),
    }
    for svc, (pods, namespaces) in expected.items():
        got_pods, got_ns, open_to_all = allowed_callers(objs, svc)
        assert not open_to_all, f"codiv-{svc} is open to everyone"
        assert (got_pods, got_ns) == (pods, namespaces), svc


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_routes_only_the_api_and_the_oauth_callback(
    renders: dict[str, list[Manifest]], overlay: str
) -> None:
    objs = renders[overlay]
    (ingress,) = by_kind(objs, "Ingress")
    routes = {
        (p["path"], p["pathType"]): p["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    assert routes == {
        ("/oauth/pinterest/callback", "Exact"): "codiv-auth",
        ("/", "Prefix"): "codiv-gateway",
    }
    redirect = urlsplit(config_data(objs)["OAUTH_REDIRECT_URI"])
    assert redirect.path == "/oauth/pinterest/callback"
    if overlay == "prod":
        assert redirect.scheme == "https"
        assert redirect.hostname == ingress["spec"]["rules"][0]["host"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_publisher_reaches_auth_through_its_service(
    renders: dict[str, list[Manifest]], overlay: str
) -> None:
    url = urlsplit(config_data(renders[overlay])["AUTH_URL"])
    service = named(renders[overlay], "Service", url.hostname or "")
    assert service["spec"]["ports"][0]["port"] == url.port == PORTS["auth"]


def test_service_monitor_scrapes_every_service(renders: dict[str, list[Manifest]]) -> None:
    objs = renders["prod"]
    monitor = named(objs, "ServiceMonitor", "codiv")
    for svc in SERVICES:
        service = named(objs, "Service", f"codiv-{svc}")
        assert selects(monitor["spec"]["selector"], service["metadata"]["labels"]), svc
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}


def test_migrations_job_uses_the_image_and_the_secret(renders: dict[str, list[Manifest]]) -> None:
    for overlay in OVERLAYS:
        job = named(renders[overlay], "Job", "codiv-migrate")
        (c,) = pod_spec(job)["containers"]
        assert c["command"] == ["codiv", "migrate"]
        assert (
            c["image"]
            == pod_spec(service_deployment(renders[overlay], "gateway"))["containers"][0]["image"]
        )
        assert env_of(c)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "codiv-secrets"
        assert pod_spec(job)["restartPolicy"] == "Never"


# ----------------------------------------------------------------------------- prod overlay


def test_prod_dependencies_are_highly_available(renders: dict[str, list[Manifest]]) -> None:
    objs = renders["prod"]
    (rabbit,) = by_kind(objs, "RabbitmqCluster")
    assert rabbit["spec"]["replicas"] == 3
    assert "default_queue_type = quorum" in rabbit["spec"]["rabbitmq"]["additionalConfig"]
    (pg,) = by_kind(objs, "Cluster")
    assert pg["spec"]["instances"] == 3
    assert pg["spec"]["postgresql"]["synchronous"]["number"] >= 1
    # No stand-alone database or broker in production.
    assert not by_kind(objs, "StatefulSet")


def test_prod_autoscaling(renders: dict[str, list[Manifest]]) -> None:
    objs = renders["prod"]
    (hpa,) = by_kind(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "codiv-gateway"
    (scaled,) = by_kind(objs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "codiv-publisher"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    app = importlib.import_module("codiv_publisher.app")
    spec = app.SPEC if hasattr(app, "SPEC") else app.service_spec(settings_class("publisher")())
    queue = spec.queue
    prefix = config_data(objs)["AMQP_QUEUE_PREFIX"]
    assert trigger["metadata"]["queueName"] == prefix + queue.name == "publisher"
    (c,) = pod_spec(service_deployment(objs, "publisher"))["containers"]
    assert trigger["metadata"]["hostFromEnv"] in env_of(c)
    # The autoscalers own the replica counts of what they scale, nothing else does.
    for name in ("gateway", "publisher"):
        assert "replicas" not in service_deployment(objs, name)["spec"], name


def test_prod_connection_budget_fits_postgres(renders: dict[str, list[Manifest]]) -> None:
    """At full scale every process' pool (+ LISTEN and migration connections) fits."""
    objs = renders["prod"]
    pool_max = int(config_data(objs)["DATABASE_POOL_MAX"])
    max_replicas = {
        "gateway": by_kind(objs, "HorizontalPodAutoscaler")[0]["spec"]["maxReplicas"],
        "publisher": by_kind(objs, "ScaledObject")[0]["spec"]["maxReplicaCount"],
        "auth": service_deployment(objs, "auth")["spec"]["replicas"],
        "scheduler": service_deployment(objs, "scheduler")["spec"]["replicas"],
    }
    needed = sum(n * (pool_max + 2) for n in max_replicas.values()) + 1  # + migrate Job
    (pg,) = by_kind(objs, "Cluster")
    max_connections = int(pg["spec"]["postgresql"]["parameters"]["max_connections"])
    assert needed <= max_connections - 10, (needed, max_connections)  # 10 for operators


def test_publisher_scratch_space_holds_its_concurrent_videos(
    renders: dict[str, list[Manifest]],
) -> None:
    fields = settings_fields("publisher")
    need = fields["VIDEO_MAX_BYTES"].default * fields["PUBLISH_CONCURRENCY"].default
    for overlay in OVERLAYS:
        dep = service_deployment(renders[overlay], "publisher")
        (c,) = pod_spec(dep)["containers"]
        temp_dir = env_of(c)["TEMP_DIR"]["value"]
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == temp_dir]
        (volume,) = [v for v in pod_spec(dep)["volumes"] if v["name"] == mount["name"]]
        assert "medium" not in volume["emptyDir"], "videos must not fill the pod's memory"
        assert quantity_bytes(volume["emptyDir"]["sizeLimit"]) >= need
        limit = quantity_bytes(c["resources"]["limits"]["ephemeral-storage"])
        assert limit >= quantity_bytes(volume["emptyDir"]["sizeLimit"])


def test_readme_covers_what_operators_need() -> None:
    text = (K8S / "README.md").read_text()
    for heading in ("Prerequisites", "Secrets", "Scaling", "Capacity", "Pending"):
        assert re.search(rf"^#+ .*{heading}", text, re.MULTILINE), heading
    for component in ("RabbitMQ Cluster Operator", "CloudNativePG", "KEDA", "Prometheus"):
        assert component in text, component
    template = yaml.safe_load((K8S / "base" / "secret.yaml").read_text())
    for key in template["stringData"]:
        assert key in text, f"README does not explain the secret {key}"


def test_secret_template_keys_match_base_deployments(base_objects: list[Manifest]) -> None:
    keys = set(named(base_objects, "Secret", "codiv-secrets")["stringData"])
    used = {
        env["valueFrom"]["secretKeyRef"]["key"]
        for _, c in all_containers(base_objects)
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert used == keys, "every template key is used, every used key is in the template"


def test_paths_in_readme_exist() -> None:
    text = (K8S / "README.md").read_text()
    for rel in re.findall(r"`(deploy/[\w./-]+)`", text):
        assert (K8S.parents[1] / rel).exists(), rel
    assert Path(K8S.parents[1] / "Dockerfile").exists()
