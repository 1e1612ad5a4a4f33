"""Deployment files: docker-compose.yml, deploy/prometheus, deploy/grafana and deploy/k8s.

Static checks that the pieces point at each other: compose services, ports and mounts; the
Prometheus targets; the Grafana provisioning and dashboard; the Kubernetes manifests (labels,
ports, probes, HPA, kustomizations, the gateway ConfigMap loaded through the gateway's own settings,
the Redis that keeps the policy's state and the gateways pointed at it).
`docker compose config` and `kubectl kustomize` run when those tools are present, and kubernetes-validate
checks what each overlay renders against the API schemas. tests/test_deploy_hardening.py checks the
hardening (Pod Security, budgets, scraping, the PrometheusRule, the torch pin).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.settings import load_settings

PROJECT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT / "deploy"
COMPOSE_FILE = PROJECT / "docker-compose.yml"
PROMETHEUS_FILE = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES_FILE = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS_FILE = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
K8S = DEPLOY / "k8s"

GATEWAY_PORT = 8080
TRITON_HTTP, TRITON_GRPC, TRITON_METRICS = 8000, 8001, 8002
REDIS_PORT = 6379
DATASOURCE_UID = "prometheus"


def _yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml"), COMPOSE_FILE])


def _load_all(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


# --------------------------------------------------------------------------------------------- YAML


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(PROJECT)))
def test_every_yaml_file_parses(path: Path):
    docs = _load_all(path)
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(doc, dict) for doc in docs), f"{path}: every document should be a mapping"


# ------------------------------------------------------------------------------------------ compose


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        probe = subprocess.run(["docker-compose", "version", "--short"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0 and probe.stdout.strip().lstrip("v").startswith("2"):
            return ["docker-compose"]
    return None


def test_docker_compose_config_validates():
    if not shutil.which("docker") and not shutil.which("docker-compose"):
        pytest.skip("no `docker` client on PATH: cannot run `docker compose config`")
    command = _compose_command()
    if command is None:
        pytest.skip("the `docker` client here has no compose plugin (`docker compose version` fails) "
                    "and there is no docker-compose v2: cannot run `docker compose config`")
    result = subprocess.run([*command, "-f", str(COMPOSE_FILE), "config", "--quiet"], cwd=PROJECT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_compose_has_the_six_services_and_triton_gets_a_gpu(compose):
    services = compose["services"]
    assert {"models", "triton", "gateway", "redis", "prometheus", "grafana"} <= set(services)
    devices = services["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), devices
    assert services["triton"]["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")


def _published(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}


def _binds(service: dict) -> dict[str, str]:
    """Container path -> host path of the service's bind mounts (short syntax, ./relative)."""
    binds = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            binds[target] = source
    return binds


def test_compose_wiring(compose, monkeypatch):
    services = compose["services"]
    gateway = services["gateway"]
    assert gateway["command"][0] == "serve"
    args = gateway["command"]
    assert args[args.index("--triton") + 1] == f"triton:{TRITON_GRPC}"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert GATEWAY_PORT in _published(gateway)
    assert gateway["depends_on"]["triton"]["condition"] == "service_healthy"
    assert TRITON_METRICS in _published(services["triton"])
    assert "/v2/health/ready" in " ".join(services["triton"]["healthcheck"]["test"])
    # Tensors cross as shared memory: the gateway lives in Triton's IPC namespace (and its /dev/shm).
    assert services["triton"]["ipc"] == "shareable" and gateway["ipc"] == "service:triton"

    # Energy is measured, from the Triton that serves the gateway, at least as often as the gateway samples.
    for name, value in gateway["environment"].items():
        monkeypatch.setenv(name, str(value))
    settings = load_settings(None, {})
    assert settings.energy.meter == "triton"
    assert settings.energy.triton_metrics_url == f"http://triton:{TRITON_METRICS}/metrics"
    interval = next(a for a in services["triton"]["command"] if a.startswith("--metrics-interval-ms="))
    assert int(interval.split("=")[1]) <= settings.energy.sample_interval_s * 1000

    prometheus = services["prometheus"]
    assert 9090 in _published(prometheus)
    binds = _binds(prometheus)
    assert binds.get("/etc/prometheus/prometheus.yml") == "./deploy/prometheus/prometheus.yml"
    if "command" in prometheus:
        assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]

    grafana = services["grafana"]
    assert 3000 in _published(grafana)
    binds = _binds(grafana)
    assert binds.get("/etc/grafana/provisioning") == "./deploy/grafana/provisioning"
    provider_path = yaml.safe_load(PROVIDERS_FILE.read_text())["providers"][0]["options"]["path"]
    assert binds.get(provider_path) == "./deploy/grafana/dashboards", (provider_path, binds)
    for source in binds.values():
        assert (PROJECT / source).exists(), source
    env = grafana.get("environment", {})
    anonymous = str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "")).lower() == "true"
    assert anonymous or "GF_SECURITY_ADMIN_PASSWORD" in env
    if anonymous:
        assert env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer"


def test_compose_keeps_the_policy_state_in_a_durable_redis(compose, monkeypatch):
    services = compose["services"]
    redis, gateway = services["redis"], services["gateway"]
    assert redis["image"].split(":")[0] == "redis"
    command = redis["command"]
    assert command[0] == "redis-server" and command[command.index("--appendonly") + 1] == "yes"
    (volume,) = redis["volumes"]
    name, target = volume.split(":")[:2]
    assert target == "/data" and name in compose["volumes"], "the append-only file needs a named volume"
    assert "ping" in " ".join(redis["healthcheck"]["test"])
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert not redis.get("ports"), "Redis has no password: it must not be published"

    for variable in [v for v in os.environ if v.startswith("CARBON_GATEWAY_")]:
        monkeypatch.delenv(variable)
    for name, value in gateway["environment"].items():
        monkeypatch.setenv(name, str(value))
    assert load_settings(None, {}).state.url == f"redis://redis:{REDIS_PORT}/0"


# --------------------------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_the_gateway_and_triton(compose):
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    targets = {job["job_name"]: [t for sc in job.get("static_configs", []) for t in sc["targets"]]
               for job in config["scrape_configs"]}
    everything = [t for ts in targets.values() for t in ts]
    assert f"gateway:{GATEWAY_PORT}" in everything, targets
    assert f"triton:{TRITON_METRICS}" in everything, targets
    for target in everything:
        assert target.split(":")[0] in compose["services"], f"{target} is not a compose service"
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"


# ------------------------------------------------------------------------------------------ Grafana


def test_grafana_datasource_is_provisioned_with_the_dashboards_uid():
    datasources = yaml.safe_load(DATASOURCES_FILE.read_text())
    assert datasources["apiVersion"] == 1
    (source,) = [d for d in datasources["datasources"] if d.get("uid") == DATASOURCE_UID]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"

    providers = yaml.safe_load(PROVIDERS_FILE.read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


def _panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return [p for p in panels if p.get("type") != "row"]


@pytest.mark.parametrize("path", sorted(DASHBOARD_DIR.glob("*.json")), ids=lambda p: p.name)
def test_dashboard_panels_use_the_provisioned_datasource_and_have_queries(path: Path):
    dashboard = json.loads(path.read_text())
    assert dashboard.get("uid") and dashboard.get("title")
    assert "__inputs" not in dashboard, "an export with __inputs does not resolve under file provisioning"
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    variable = variables["datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert variable["current"]["value"] == DATASOURCE_UID
    allowed = {DATASOURCE_UID, "${datasource}", "$datasource"}

    panels = _panels(dashboard)
    assert panels
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        where = f"panel {panel.get('id')} ({panel.get('title')})"
        assert panel["datasource"]["type"] == "prometheus", where
        assert panel["datasource"]["uid"] in allowed, where
        assert panel.get("targets"), f"{where} has no query"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{where} target {target.get('refId')} has no expr"
            if "datasource" in target:
                assert target["datasource"]["uid"] in allowed, where
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{where}: refIds repeat"


# ------------------------------------------------------------------------------------------ Kubernetes


def _kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def _overlays() -> list[Path]:
    """The directories `kubectl apply -k` takes: every kustomization but the components they share."""
    return [k.parent for k in _kustomizations() if yaml.safe_load(k.read_text()).get("kind") != "Component"]


def _listed_files() -> set[Path]:
    """Files named by the kustomizations' resources and patches (directories are other kustomizations)."""
    listed = set()
    for kustomization in _kustomizations():
        spec = yaml.safe_load(kustomization.read_text())
        entries = list(spec.get("resources", [])) + list(spec.get("components", []))
        entries += [p["path"] for p in spec.get("patches", []) if "path" in p]
        entries += list(spec.get("patchesStrategicMerge", []))
        for entry in entries:
            target = (kustomization.parent / entry).resolve()
            assert target.exists(), f"{kustomization.relative_to(PROJECT)} lists {entry}, which is missing"
            if target.is_dir():
                assert (target / "kustomization.yaml").exists(), f"{entry} is not a kustomization"
            else:
                listed.add(target)
    return listed


def _manifest_files() -> list[Path]:
    # Helm values files (*-values.yaml) live beside the overlays but are not Kubernetes objects.
    return sorted(p for p in K8S.rglob("*.yaml")
                  if p.name != "kustomization.yaml" and not p.name.endswith("-values.yaml"))


def _patch_files() -> set[Path]:
    patches = set()
    for kustomization in _kustomizations():
        spec = yaml.safe_load(kustomization.read_text())
        patches |= {(kustomization.parent / p["path"]).resolve() for p in spec.get("patches", []) if "path" in p}
    return patches


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    """Every object of the manifests (patches excluded)."""
    patches = _patch_files()
    return [doc for path in _manifest_files() if path.resolve() not in patches for doc in _load_all(path)]


def _of(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _containers(deployment: dict) -> list[dict]:
    return deployment["spec"]["template"]["spec"]["containers"]


def _port(container: dict, port) -> int:
    """A probe's or Service's port (name or number) as the container's port number."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port] or [None]
    assert number is not None, f"container {container['name']} has no port named {port}"
    return number


def test_k8s_manifests_exist_and_every_one_is_in_a_kustomization():
    files = _manifest_files()
    assert files, "no manifests in deploy/k8s"
    assert (K8S / "kustomization.yaml").exists()
    unlisted = {p.relative_to(PROJECT) for p in files} - {p.relative_to(PROJECT) for p in _listed_files()}
    assert not unlisted, f"manifests that no kustomization lists: {sorted(map(str, unlisted))}"


def test_k8s_every_document_names_itself(objects):
    for path in _manifest_files():
        for doc in _load_all(path):
            where = path.relative_to(PROJECT)
            assert doc.get("apiVersion"), f"{where}: a document without apiVersion"
            assert doc.get("kind"), f"{where}: a document without kind"
            assert doc.get("metadata", {}).get("name"), f"{where}: a {doc.get('kind')} without metadata.name"
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "PersistentVolumeClaim", "Job",
            "ServiceMonitor", "PrometheusRule", "PodDisruptionBudget", "Namespace"} <= kinds, kinds


def test_k8s_deployments_select_their_own_pods(objects):
    for name, deployment in _of(objects, "Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"Deployment {name}: selector {selector} vs labels {labels}"


def _selected(objects: list[dict], selector: dict) -> list[dict]:
    return [d for d in _of(objects, "Deployment").values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]


def test_k8s_services_select_deployments_and_target_their_ports(objects):
    services = _of(objects, "Service")
    assert {"carbon-gateway", "triton"} <= set(services)
    for name, service in services.items():
        pods = _selected(objects, service["spec"]["selector"])
        assert len(pods) == 1, f"Service {name} selects {len(pods)} Deployments"
        containers = _containers(pods[0])
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            numbers = {p["containerPort"] for c in containers for p in c.get("ports", [])
                       if (p.get("name") == target if isinstance(target, str) else p["containerPort"] == target)}
            assert numbers, f"Service {name} port {port.get('name')}: no container port {target}"
    assert {p["port"] for p in services["carbon-gateway"]["spec"]["ports"]} == {GATEWAY_PORT}
    assert {p["port"] for p in services["triton"]["spec"]["ports"]} == {TRITON_HTTP, TRITON_GRPC, TRITON_METRICS}


def _gateway(objects) -> dict:
    return _of(objects, "Deployment")["carbon-gateway"]


def test_k8s_gateway_runs_serve_with_probes_config_and_models(objects):
    deployment = _gateway(objects)
    (container,) = _containers(deployment)
    args = container["args"]
    assert args[0] == "serve"
    flag = lambda name: args[args.index(name) + 1]  # noqa: E731
    assert flag("--host") == "0.0.0.0"
    assert int(flag("--port")) == GATEWAY_PORT == _port(container, "http")
    triton_service = _of(objects, "Service")["triton"]
    assert flag("--triton") == f"{triton_service['metadata']['name']}:{TRITON_GRPC}"

    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz" and _port(container, readiness["port"]) == GATEWAY_PORT
    assert liveness["path"] == "/healthz" and _port(container, liveness["port"]) == GATEWAY_PORT

    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config_dir = str(Path(flag("--config")).parent)
    config_volume = volumes[mounts[config_dir]]
    configmap = _of(objects, "ConfigMap")[config_volume["configMap"]["name"]]
    assert Path(flag("--config")).name in configmap["data"]
    claim = volumes[mounts[flag("--repository")]]["persistentVolumeClaim"]["claimName"]
    assert claim in _of(objects, "PersistentVolumeClaim")

    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert int(annotations["prometheus.io/port"]) == GATEWAY_PORT
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"


def _serve_settings(container: dict, configmaps: dict[str, dict], tmp_path: Path):
    """The settings a gateway container's `serve` args and its ConfigMap resolve to, and the YAML itself."""
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    text = configmaps["carbon-gateway-config"]["data"][config_path.name]
    config = yaml.safe_load(text)
    assert isinstance(config, dict)
    path = tmp_path / config_path.name
    path.write_text(text)
    overrides = {"host": args[args.index("--host") + 1], "port": int(args[args.index("--port") + 1]),
                 "triton": {"url": args[args.index("--triton") + 1],
                            "model_repository": args[args.index("--repository") + 1]}}
    return load_settings(path, overrides), config  # raises ConfigError naming a bad key


def test_k8s_gateway_configmap_loads_as_gateway_settings(objects, monkeypatch, tmp_path):
    for variable in [v for v in os.environ if v.startswith("CARBON_GATEWAY_")]:
        monkeypatch.delenv(variable)
    (container,) = _containers(_gateway(objects))
    settings, config = _serve_settings(container, _of(objects, "ConfigMap"), tmp_path)
    assert settings.host == "0.0.0.0" and settings.port == GATEWAY_PORT
    assert settings.triton.url == f"triton:{TRITON_GRPC}"
    assert settings.workers == config.get("workers", settings.workers)
    assert settings.policy.name == config["policy"]["name"]
    assert settings.energy.meter == config["energy"]["meter"]
    assert settings.state.url == config["state"]["url"] == _redis_url(objects)


def _redis_url(objects: list[dict]) -> str:
    """The URL of the Redis the manifests run: its Service's name and port, database 0."""
    service = _of(objects, "Service")["redis"]
    (port,) = service["spec"]["ports"]
    return f"redis://{service['metadata']['name']}:{port['port']}/0"


def test_k8s_redis_keeps_the_policy_state_on_a_claim(objects):
    deployment = _of(objects, "Deployment")["redis"]
    (container,) = _containers(deployment)
    assert container["image"].split(":")[0] == "redis"
    args = container["args"]
    assert args[0] == "redis-server" and args[args.index("--appendonly") + 1] == "yes"
    data = args[args.index("--dir") + 1]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[mounts[data]["name"]]["persistentVolumeClaim"]["claimName"]
    assert not mounts[data].get("readOnly") and claim in _of(objects, "PersistentVolumeClaim")
    # One writer of the append-only file: one replica, and the old pod gone before the new one starts.
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    (port,) = _of(objects, "Service")["redis"]["spec"]["ports"]
    assert port["port"] == REDIS_PORT == _port(container, port["targetPort"])
    assert "readinessProbe" in container and "livenessProbe" in container


def test_k8s_triton_gets_a_gpu_probes_and_the_model_repository(objects):
    deployment = _of(objects, "Deployment")["triton"]
    (container,) = _containers(deployment)
    assert container["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert _port(container, "http") == TRITON_HTTP
    assert _port(container, "grpc") == TRITON_GRPC
    assert _port(container, "metrics") == TRITON_METRICS
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/v2/health/ready" and _port(container, readiness["port"]) == TRITON_HTTP
    assert liveness["path"] == "/v2/health/live" and _port(container, liveness["port"]) == TRITON_HTTP

    repository = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--model-repository=")]
    assert repository, container["args"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[mounts[repository[0]]]["persistentVolumeClaim"]["claimName"]
    assert claim in _of(objects, "PersistentVolumeClaim")

    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert int(annotations["prometheus.io/port"]) == TRITON_METRICS


def test_k8s_build_models_job_fills_the_shared_repository_with_the_gateway_image(objects):
    (job,) = _of(objects, "Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    (gateway,) = _containers(_gateway(objects))
    assert container["image"] == gateway["image"], "build-models runs from the gateway image"
    args = container["args"]
    assert args[0] == "build-models"
    output = args[args.index("--output") + 1]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    job_claim = volumes[mounts[output]]["persistentVolumeClaim"]["claimName"]
    for name in ("carbon-gateway", "triton"):
        pod = _of(objects, "Deployment")[name]["spec"]["template"]["spec"]
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        assert job_claim in claims, f"{name} does not mount the repository build-models writes"
    claim = _of(objects, "PersistentVolumeClaim")[job_claim]
    assert "ReadWriteMany" in claim["spec"]["accessModes"] or "ReadOnlyMany" in claim["spec"]["accessModes"]


def test_k8s_hpa_scales_the_gateway_on_cpu(objects):
    (hpa,) = _of(objects, "HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "carbon-gateway")
    assert target["name"] in _of(objects, "Deployment")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    (container,) = _containers(_gateway(objects))
    assert container["resources"]["requests"]["cpu"], "CPU utilization needs a CPU request"


def test_k8s_custom_metric_hpa_matches_the_prometheus_adapter_rule(objects):
    patch = yaml.safe_load((K8S / "custom-metrics" / "hpa-request-rate.yaml").read_text())
    assert patch["kind"] == "HorizontalPodAutoscaler"
    assert patch["metadata"]["name"] in _of(objects, "HorizontalPodAutoscaler")
    names = {m["pods"]["metric"]["name"] for m in patch["spec"]["metrics"] if m["type"] == "Pods"}
    values = yaml.safe_load((K8S / "custom-metrics" / "prometheus-adapter-values.yaml").read_text())
    rules = values["rules"]["custom"]
    assert any("carbon_gateway_requests_total" in r["seriesQuery"] and r["name"]["as"] in names for r in rules)


def test_k8s_servicemonitors_reach_the_metrics_ports(objects):
    monitors = _of(objects, "ServiceMonitor")
    services = _of(objects, "Service")
    scraped = set()
    for name, monitor in monitors.items():
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services.values() if selector.items() <= s["metadata"].get("labels", {}).items()]
        assert len(matched) == 1, f"ServiceMonitor {name} matches {len(matched)} Services"
        ports = {p["name"]: p["port"] for p in matched[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports, f"ServiceMonitor {name}: no Service port {endpoint['port']}"
            assert endpoint.get("path", "/metrics") == "/metrics"
            scraped.add(ports[endpoint["port"]])
    assert {GATEWAY_PORT, TRITON_METRICS} <= scraped


@pytest.mark.parametrize("overlay", _overlays(), ids=lambda p: str(p.relative_to(PROJECT)))
def test_kubectl_kustomize_builds(overlay: Path):
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl on PATH: cannot run `kubectl kustomize`")
    result = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{shlex.join(result.args)}: {result.stderr}"
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = {d["kind"] for d in built}
    assert {"Deployment", "Service", "ConfigMap", "Job"} <= kinds
    assert all(d["metadata"].get("namespace") == "carbon-gateway" for d in built if d["kind"] != "Namespace")


# The Prometheus Operator's kinds have no schema in kubernetes-validate; the tests above check them.
OPERATOR_GROUP = "monitoring.coreos.com/"


@pytest.mark.parametrize("overlay", _overlays(), ids=lambda p: str(p.relative_to(PROJECT)))
def test_kubernetes_validate_strict(overlay: Path):
    """Every object an overlay renders against the API's schema, unknown fields refused (a misspelt
    securityContext field would otherwise be dropped by the API server without a word)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    built = _kustomize(overlay)
    version = kubernetes_validate.latest_version()
    checked = 0
    for doc in built:
        if doc["apiVersion"].startswith(OPERATOR_GROUP):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")
        checked += 1
    assert checked >= 6, f"only {checked} objects validated"


def _kustomize(directory: Path) -> list[dict]:
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl on PATH: cannot run `kubectl kustomize`")
    result = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_k8s_sidecar_overlay_has_each_gateway_measure_its_own_pods_gpu(monkeypatch, tmp_path):
    for variable in [v for v in os.environ if v.startswith("CARBON_GATEWAY_")]:
        monkeypatch.delenv(variable)
    built = _kustomize(K8S / "sidecar")
    assert set(_of(built, "Deployment")) == {"triton", "redis"} and not _of(built, "HorizontalPodAutoscaler")
    triton = _of(built, "Deployment")["triton"]
    containers = {c["name"]: c for c in _containers(triton)}
    gateway, server = containers["gateway"], containers["triton"]
    port_names = [p["name"] for c in containers.values() for p in c.get("ports", [])]
    assert len(port_names) == len(set(port_names)), port_names  # unique in the pod

    settings, _ = _serve_settings(gateway, _of(built, "ConfigMap"), tmp_path)
    assert settings.triton.url == f"localhost:{_port(server, 'grpc')}"
    assert settings.state.url == _redis_url(built)  # every pod's gateway adds to the one account
    assert settings.energy.meter == "triton"
    assert settings.energy.triton_metrics_url == f"http://localhost:{_port(server, 'metrics')}/metrics"
    interval = next(a for a in server["args"] if a.startswith("--metrics-interval-ms="))
    assert int(interval.split("=")[1]) <= settings.energy.sample_interval_s * 1000

    volumes = {v["name"]: v for v in triton["spec"]["template"]["spec"]["volumes"]}
    assert {m["name"] for m in gateway["volumeMounts"]} <= set(volumes)
    # One memory-backed /dev/shm for both, which Triton (in the gateway's group) may read: tensors cross
    # as shared-memory regions (gateway/triton/shm.py), not gRPC bytes.
    shm = {c: next(m["name"] for m in containers[c]["volumeMounts"] if m["mountPath"] == "/dev/shm")
           for c in ("gateway", "triton")}
    assert shm["gateway"] == shm["triton"] and volumes[shm["gateway"]]["emptyDir"]["medium"] == "Memory"
    gateway_group = gateway["securityContext"]["runAsGroup"]
    assert gateway_group in triton["spec"]["template"]["spec"]["securityContext"]["supplementalGroups"]
    service = _of(built, "Service")["carbon-gateway"]
    assert service["spec"]["selector"].items() <= triton["spec"]["template"]["metadata"]["labels"].items()
    assert _port(gateway, service["spec"]["ports"][0]["targetPort"]) == GATEWAY_PORT
    for probe in ("readinessProbe", "livenessProbe"):
        assert _port(gateway, gateway[probe]["httpGet"]["port"]) == GATEWAY_PORT
