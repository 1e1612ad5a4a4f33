"""Hardening of the image and the Kubernetes deployment, checked on what `kubectl kustomize` renders.

Every overlay's pods against the Pod Security "restricted" profile (with the image users and the
writable directories behind it), disruption budgets and topology spread, the HPA's ownership of the
gateway's replicas, Triton's GPU-neutral rollout, scraping in every overlay (the sidecar's gateway
included), the ServiceMonitors' release label, the PrometheusRule generated from alerts.yml, and the
one torch pin of the image and the Makefile.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
CONSTRAINTS = DEPLOY / "constraints.txt"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
RULE_SCRIPT = DEPLOY / "prometheus" / "prometheusrule.py"
MONITORING_COMPONENT = K8S / "components" / "monitoring"
OPERATIONS = PROJECT / "docs" / "operations.md"

GATEWAY_IMAGE = "carbon-gateway"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver"
TRITON_USER = (1000, 1000)  # triton-server, the user NVIDIA's image runs as
REDIS_IMAGE = "redis"
REDIS_USER = (999, 999)  # redis, the user the official image runs as
RELEASE_LABEL = ("release", "kube-prometheus-stack")  # kube-prometheus-stack's default selectors
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def _overlays() -> list[Path]:
    return sorted(k.parent for k in K8S.rglob("kustomization.yaml")
                  if yaml.safe_load(k.read_text()).get("kind") != "Component")


OVERLAYS = _overlays()


def _id(path: Path) -> str:
    return str(path.relative_to(PROJECT))


@functools.cache
def _render(overlay: Path) -> tuple[dict, ...]:
    result = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


@pytest.fixture(params=OVERLAYS, ids=_id)
def built(request) -> list[dict]:
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl on PATH: cannot run `kubectl kustomize`")
    return list(_render(request.param))


def _of(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _templates(objects: list[dict]) -> dict[str, dict]:
    """Pod templates of the workloads, by `Kind/name`."""
    return {f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"] for o in objects if o["kind"] in WORKLOADS}


def _all_containers(pod: dict) -> list[dict]:
    return [*pod.get("initContainers", []), *pod.get("containers", []), *pod.get("ephemeralContainers", [])]


def _selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels is evaluated here: {selector}"
    return selector["matchLabels"].items() <= labels.items()


def _image_is(container: dict, image: str) -> bool:
    return container["image"].split("@")[0].rsplit(":", 1)[0] == image


# ------------------------------------------------------------------- Pod Security "restricted"
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (baseline and restricted, v1.32)

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}


def restricted_violations(template: dict) -> list[str]:
    """What a pod template breaks of the Pod Security Standards' restricted profile (baseline included)."""
    pod, annotations = template["spec"], template.get("metadata", {}).get("annotations", {})
    pod_context = pod.get("securityContext", {})
    found: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            found.append(what)

    def selinux_ok(options: dict) -> bool:
        return options.get("type", "") in SELINUX_TYPES and not options.get("user") and not options.get("role")

    for namespace in ("hostNetwork", "hostPID", "hostIPC"):
        check(not pod.get(namespace), f"pod: {namespace}")
    check(not pod_context.get("windowsOptions", {}).get("hostProcess"), "pod: hostProcess")
    check(selinux_ok(pod_context.get("seLinuxOptions", {})), "pod: seLinuxOptions")
    check(pod_context.get("appArmorProfile", {}).get("type", "RuntimeDefault") in SECCOMP_TYPES, "pod: appArmorProfile")
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/"):
            check(value == "runtime/default" or value.startswith("localhost/"), f"pod: AppArmor annotation {key}")
    check(pod_context.get("runAsUser") != 0, "pod: runAsUser 0")
    if "seccompProfile" in pod_context:
        check(pod_context["seccompProfile"].get("type") in SECCOMP_TYPES, "pod: seccompProfile")
    for sysctl in pod_context.get("sysctls", []):
        check(sysctl["name"] in SAFE_SYSCTLS, f"pod: sysctl {sysctl['name']}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        check(kinds <= RESTRICTED_VOLUMES, f"volume {volume['name']}: {sorted(kinds)}")

    for container in _all_containers(pod):
        context, where = container.get("securityContext", {}), f"container {container['name']}"

        def effective(key: str, context: dict = context):
            return context.get(key, pod_context.get(key))

        check(not context.get("privileged"), f"{where}: privileged")
        check(not context.get("windowsOptions", {}).get("hostProcess"), f"{where}: hostProcess")
        check(not any(p.get("hostPort") for p in container.get("ports", [])), f"{where}: hostPort")
        check(context.get("procMount", "Default") == "Default", f"{where}: procMount")
        check(selinux_ok(context.get("seLinuxOptions", {})), f"{where}: seLinuxOptions")
        check(context.get("appArmorProfile", {}).get("type", "RuntimeDefault") in SECCOMP_TYPES,
              f"{where}: appArmorProfile")
        check(context.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation is not false")
        check(effective("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true")
        check(context.get("runAsUser") != 0, f"{where}: runAsUser 0")
        check((effective("seccompProfile") or {}).get("type") in SECCOMP_TYPES,
              f"{where}: seccompProfile is not RuntimeDefault or Localhost")
        capabilities = context.get("capabilities", {})
        check("ALL" in capabilities.get("drop", []), f"{where}: capabilities do not drop ALL")
        check(set(capabilities.get("add", [])) <= {"NET_BIND_SERVICE"}, f"{where}: adds {capabilities.get('add')}")
    return found


def _hardened() -> dict:
    return yaml.safe_load("""
        metadata: {}
        spec:
          securityContext: {runAsNonRoot: true, runAsUser: 10001, seccompProfile: {type: RuntimeDefault}}
          containers:
            - name: c
              image: i
              securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
          volumes: [{name: tmp, emptyDir: {}}]
    """)


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("spec.securityContext.runAsNonRoot", None, "runAsNonRoot is not true"),
    ("spec.containers.0.securityContext.runAsNonRoot", False, "runAsNonRoot is not true"),
    ("spec.securityContext.seccompProfile", None, "seccompProfile is not RuntimeDefault"),
    ("spec.containers.0.securityContext.seccompProfile", {"type": "Unconfined"}, "seccompProfile is not"),
    ("spec.containers.0.securityContext.allowPrivilegeEscalation", None, "allowPrivilegeEscalation"),
    ("spec.containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]}, "do not drop ALL"),
    ("spec.containers.0.securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}, "adds"),
    ("spec.containers.0.securityContext.privileged", True, "privileged"),
    ("spec.containers.0.securityContext.runAsUser", 0, "runAsUser 0"),
    ("spec.hostNetwork", True, "hostNetwork"),
    ("spec.volumes.0", {"name": "tmp", "hostPath": {"path": "/tmp"}}, "hostPath"),
    ("spec.initContainers", [{"name": "init", "image": "i"}], "container init"),
])
def test_the_restricted_check_catches_each_breach(path: str, value, expected: str):
    template = _hardened()
    assert restricted_violations(template) == []
    *parents, leaf = path.split(".")
    node = template
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is None:
        del node[leaf]
    elif isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
    assert any(expected in v for v in restricted_violations(template)), restricted_violations(template)


def test_every_pod_meets_the_restricted_profile(built):
    templates = _templates(built)
    assert templates
    for name, template in templates.items():
        assert restricted_violations(template) == [], name


def test_no_pod_mounts_a_service_account_token(built):
    for name, template in _templates(built).items():
        assert template["spec"].get("automountServiceAccountToken") is False, name


def test_the_namespace_enforces_the_restricted_profile(built):
    (namespace,) = _of(built, "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ------------------------------------------------------------- users and writable directories


def _dockerfile_user() -> tuple[int, int]:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert users, "deploy/Dockerfile sets no USER: the image runs as root"
    match = re.fullmatch(r"(\d+):(\d+)", users[-1])
    assert match, f"USER {users[-1]}: numeric uid:gid, so that the kubelet can verify runAsNonRoot"
    return int(match[1]), int(match[2])


def _dockerfile_home() -> str:
    homes = re.findall(r"^ENV\s+.*\bHOME=(\S+)", DOCKERFILE.read_text(), re.M)
    assert homes, "deploy/Dockerfile sets no HOME"
    return homes[-1]


def test_the_image_runs_as_a_non_root_user_that_owns_its_volume_mount():
    uid, gid = _dockerfile_user()
    assert uid > 0 and gid > 0
    text = DOCKERFILE.read_text()
    # Compose's `models` volume is seeded from the image's /models, ownership included.
    assert re.search(rf"chown {uid}:{gid} /models\b", text), "the image's /models is not owned by its USER"
    assert text.index("chown") < text.rindex("\nUSER "), "chown needs root: before USER"


def _mounts(template: dict, container: dict) -> dict[str, dict]:
    """mountPath -> the volume behind it, with the mount's readOnly."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    return {m["mountPath"]: {**volumes[m["name"]], "readOnly": m.get("readOnly", False)}
            for m in container.get("volumeMounts", [])}


def _writable_paths(container: dict) -> set[str]:
    """Where each image writes under a read-only root filesystem."""
    if _image_is(container, GATEWAY_IMAGE):
        # tempfile's directory: the Prometheus multiprocess directory, the energy sampler's socket.
        paths = {"/tmp"}
        if container.get("args", [""])[0] == "build-models":
            paths.add(f"{_dockerfile_home()}/.cache")  # torch.hub's download cache
        return paths
    if _image_is(container, TRITON_IMAGE):
        return {"/tmp", "/dev/shm"}
    return set()


def test_every_container_runs_read_only_as_its_images_user(built):
    gateway_user = _dockerfile_user()
    seen = set()
    for name, template in _templates(built).items():
        pod_context = template["spec"].get("securityContext", {})
        for container in _all_containers(template["spec"]):
            context, where = container.get("securityContext", {}), f"{name} {container['name']}"
            user = (context.get("runAsUser", pod_context.get("runAsUser")),
                    context.get("runAsGroup", pod_context.get("runAsGroup")))
            assert all(isinstance(i, int) and i > 0 for i in user), f"{where}: runAsUser/runAsGroup {user}"
            if _image_is(container, GATEWAY_IMAGE):
                assert user == gateway_user, f"{where} runs as {user}, the image's USER is {gateway_user}"
                seen.add(GATEWAY_IMAGE)
            if _image_is(container, TRITON_IMAGE):
                assert user == TRITON_USER, f"{where} runs as {user}, not triton-server"
                seen.add(TRITON_IMAGE)
            if _image_is(container, REDIS_IMAGE):
                assert user == REDIS_USER, f"{where} runs as {user}, not the image's redis"
                seen.add(REDIS_IMAGE)
            assert context.get("readOnlyRootFilesystem") is True, f"{where}: writable root filesystem"

            mounts = _mounts(template, container)
            for path in _writable_paths(container):
                assert path in mounts and "emptyDir" in mounts[path], f"{where}: {path} is not an emptyDir"
                assert not mounts[path]["readOnly"], f"{where}: {path} is mounted read-only"
            if container.get("args", [""])[0] == "build-models":
                output = container["args"][container["args"].index("--output") + 1]
                assert "persistentVolumeClaim" in mounts[output] and not mounts[output]["readOnly"], where
            if _image_is(container, REDIS_IMAGE):  # its one writable directory is its claim, its group's
                data = container["args"][container["args"].index("--dir") + 1]
                assert "persistentVolumeClaim" in mounts[data] and not mounts[data]["readOnly"], where
                assert pod_context.get("fsGroup") == REDIS_USER[1], f"{where}: the claim is not writable by redis"
    assert seen == {GATEWAY_IMAGE, TRITON_IMAGE, REDIS_IMAGE}


def test_every_container_has_requests_and_init_containers_limits(built):
    for name, template in _templates(built).items():
        pod = template["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            resources, where = container.get("resources", {}), f"{name} {container['name']}"
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}: requests"
            assert "memory" in resources.get("limits", {}), f"{where}: no memory limit"
        for container in pod.get("initContainers", []):
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), f"{name} {container['name']}"


# ------------------------------------------------------------- scheduling and disruptions


def test_the_hpa_alone_sets_the_gateways_replicas(built):
    deployments = _of(built, "Deployment")
    for name, hpa in _of(built, "HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments, name
        assert "replicas" not in deployments[target["name"]]["spec"], (
            f"Deployment {target['name']} sets replicas, which the HPA {name} owns: each apply would reset the scale")


def test_every_deployment_has_a_disruption_budget_that_lets_a_node_drain(built):
    budgets = list(_of(built, "PodDisruptionBudget").values())
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in _of(built, "HorizontalPodAutoscaler").values()}
    templates = _templates(built)
    for budget in budgets:
        selected = [n for n, t in templates.items() if _selects(budget["spec"]["selector"], t["metadata"]["labels"])]
        assert selected, f"PodDisruptionBudget {budget['metadata']['name']} selects no pods"
    for name, deployment in _of(built, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (budget,) = [b for b in budgets if _selects(b["spec"]["selector"], labels)] or [None]
        assert budget is not None, f"Deployment {name} has no PodDisruptionBudget"
        spec = budget["spec"]
        replicas = hpas[name]["spec"]["minReplicas"] if name in hpas else deployment["spec"].get("replicas", 1)
        if "maxUnavailable" in spec:
            assert spec["maxUnavailable"] not in (0, "0%"), f"{name}: the budget forbids every eviction"
        else:
            assert int(spec["minAvailable"]) < replicas, f"{name}: minAvailable >= replicas blocks every drain"
        if name in hpas:
            assert replicas >= 2 and spec.get("maxUnavailable", 1) == 1, f"{name}: one pod may go at a time"


def test_the_gateway_spreads_over_nodes_and_zones(built):
    deployment = _of(built, "Deployment").get("carbon-gateway")
    if deployment is None:
        pytest.skip("no gateway Deployment here (the sidecar overlay): it scales with Triton")
    template = deployment["spec"]["template"]
    constraints = {c["topologyKey"]: c for c in template["spec"].get("topologySpreadConstraints", [])}
    assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= set(constraints)
    for key, constraint in constraints.items():
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway", f"{key}: would leave pods pending"
        assert _selects(constraint["labelSelector"], template["metadata"]["labels"]), f"{key}: not its own pods"
        assert constraint["maxSkew"] >= 1


def test_a_gpu_deployment_rolls_out_without_a_spare_gpu(built):
    gpu = {n: d for n, d in _of(built, "Deployment").items()
           if any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) for c in _all_containers(
               d["spec"]["template"]["spec"]))}
    assert "triton" in gpu
    for name, deployment in gpu.items():
        strategy = deployment["spec"].get("strategy", {})
        if strategy.get("type") == "Recreate":
            continue
        rolling = strategy.get("rollingUpdate", {})
        assert strategy.get("type") == "RollingUpdate" and rolling.get("maxSurge") in (0, "0%"), (
            f"Deployment {name}: a rollout would start an extra pod, which needs a spare GPU: {strategy}")
        assert rolling.get("maxUnavailable") not in (None, 0, "0%"), f"Deployment {name} could never roll out"


# ----------------------------------------------------------------------------- scraping


def _flag(args: list[str], name: str) -> str:
    """--name value or --name=value."""
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {args}")


def _metrics_ports(built: list[dict]) -> set[tuple[str, int]]:
    """(Deployment, port) of every /metrics: each gateway's --port and each Triton's --metrics-port."""
    ports = set()
    for name, deployment in _of(built, "Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if _image_is(container, GATEWAY_IMAGE):
                ports.add((name, int(_flag(container["args"], "--port"))))
            if _image_is(container, TRITON_IMAGE):
                ports.add((name, int(_flag(container["args"], "--metrics-port"))))
    return ports


def _target_port(deployment: dict, target) -> int:
    if isinstance(target, int):
        return target
    (number,) = [p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", []) if p.get("name") == target]
    return number


def _scraped(built: list[dict]) -> set[tuple[str, int]]:
    """(Deployment, port) that Prometheus scrapes: through the Operator's ServiceMonitors and PodMonitors
    where the overlay has them, otherwise through prometheus.io/* annotations on pods and Services."""
    deployments, services = _of(built, "Deployment"), _of(built, "Service")
    operator = _of(built, "ServiceMonitor") or _of(built, "PodMonitor")
    scraped = set()

    def pods_of(selector: dict) -> list[tuple[str, dict]]:
        return [(n, d) for n, d in deployments.items()
                if _selects(selector, d["spec"]["template"]["metadata"]["labels"])]

    if operator:
        for monitor in _of(built, "ServiceMonitor").values():
            for service in services.values():
                if not _selects(monitor["spec"]["selector"], service["metadata"].get("labels", {})):
                    continue
                for endpoint in monitor["spec"]["endpoints"]:
                    (port,) = [p for p in service["spec"]["ports"] if p.get("name") == endpoint["port"]]
                    for name, deployment in pods_of({"matchLabels": service["spec"]["selector"]}):
                        scraped.add((name, _target_port(deployment, port.get("targetPort", port["port"]))))
        for monitor in _of(built, "PodMonitor").values():
            for name, deployment in pods_of(monitor["spec"]["selector"]):
                for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                    scraped.add((name, _target_port(deployment, endpoint["port"])))
        return scraped
    for name, deployment in deployments.items():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            scraped.add((name, int(annotations["prometheus.io/port"])))
    for service in services.values():
        annotations = service["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            (port,) = [p for p in service["spec"]["ports"] if p["port"] == int(annotations["prometheus.io/port"])]
            for name, deployment in pods_of({"matchLabels": service["spec"]["selector"]}):
                scraped.add((name, _target_port(deployment, port.get("targetPort", port["port"]))))
    return scraped


def test_every_gateway_and_triton_is_scraped(built):
    expected = _metrics_ports(built)
    assert len(expected) >= 2
    missing = expected - _scraped(built)
    assert not missing, f"metrics that reach no Prometheus: {sorted(missing)}"


def test_the_sidecar_gateway_is_scraped_with_and_without_the_operator():
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl on PATH: cannot run `kubectl kustomize`")
    for overlay in ("sidecar", "sidecar-monitoring"):
        built = list(_render(K8S / overlay))
        assert set(_of(built, "Deployment")) == {"triton", "redis"}
        assert {("triton", 8080), ("triton", 8002)} <= _scraped(built), overlay
    assert _of(list(_render(K8S / "sidecar-monitoring")), "ServiceMonitor")


def test_operator_objects_carry_the_release_label(built):
    objects = [o for o in built if o["kind"] in OPERATOR_KINDS]
    if not objects:
        pytest.skip("no Prometheus Operator objects in this overlay")
    assert {"ServiceMonitor", "PrometheusRule"} <= {o["kind"] for o in objects}
    key, value = RELEASE_LABEL
    for o in objects:
        assert o["metadata"].get("labels", {}).get(key) == value, f"{o['kind']}/{o['metadata']['name']}"


def _documented_release_patch() -> dict:
    """The kustomize patch docs/operations.md gives for another Helm release name."""
    blocks = re.findall(r"```yaml\n(.*?)```", OPERATIONS.read_text(), re.S)
    specs = [yaml.safe_load(b) for b in blocks]
    (spec,) = [s for s in specs if isinstance(s, dict) and "release" in str(s.get("patches"))]
    return spec


def test_the_documented_patch_changes_the_release_label(tmp_path):
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl on PATH: cannot run `kubectl kustomize`")
    spec = _documented_release_patch()
    spec["resources"] = [os.path.relpath(K8S / "monitoring", tmp_path)]  # kustomize takes no absolute base
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    built = [o for o in _render(tmp_path) if o["kind"] in OPERATOR_KINDS]
    releases = {o["metadata"]["labels"]["release"] for o in built}
    assert len(built) >= 3 and len(releases) == 1 and releases != {RELEASE_LABEL[1]}, releases
    workloads = [o for o in _render(tmp_path) if o["kind"] not in OPERATOR_KINDS]
    assert not any("release" in o["metadata"].get("labels", {}) for o in workloads), "the patch reaches too far"


# ------------------------------------------------------------------------- PrometheusRule


def _rule_script():
    spec = importlib.util.spec_from_file_location("prometheusrule", RULE_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheusrule_holds_exactly_the_alerts_of_alerts_yml():
    script = _rule_script()
    committed = MONITORING_COMPONENT / "prometheusrule.yaml"
    assert committed == script.RULE
    rule = yaml.safe_load(committed.read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"], (
        "the PrometheusRule and alerts.yml differ: run python deploy/prometheus/prometheusrule.py")
    assert committed.read_text() == script.render(), "stale: run python deploy/prometheus/prometheusrule.py"
    component = yaml.safe_load((MONITORING_COMPONENT / "kustomization.yaml").read_text())
    assert committed.name in component["resources"]


def test_the_rule_script_notices_a_change_to_the_alerts(tmp_path):
    script = _rule_script()
    alerts = yaml.safe_load(ALERTS.read_text())
    alerts["groups"][0]["rules"][0]["for"] = "1h"
    changed = tmp_path / "alerts.yml"
    changed.write_text(yaml.safe_dump(alerts))
    assert script.render(changed) != script.render()
    assert yaml.safe_load(script.render(changed))["spec"]["groups"] == alerts["groups"]


def test_every_monitoring_overlay_ships_the_rules():
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl on PATH: cannot run `kubectl kustomize`")
    with_monitors = [o for o in OVERLAYS if _of(list(_render(o)), "ServiceMonitor")]
    assert len(with_monitors) >= 2
    for overlay in with_monitors:
        assert "carbon-gateway" in _of(list(_render(overlay)), "PrometheusRule"), _id(overlay)


# ------------------------------------------------------------------------------ torch pin


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            assert name not in pins, f"{name} is pinned twice"
            pins[name.strip()] = version.strip()
    return pins


def test_one_torch_pin_for_the_image_and_local_builds():
    pins = _pins()
    assert set(pins) == {"torch", "torchvision"}
    # torchvision 0.N is built for torch 2.(N-15), one pair per release since 0.15 and 2.0.
    torch_major, torch_minor = map(int, pins["torch"].split(".")[:2])
    vision_major, vision_minor = map(int, pins["torchvision"].split(".")[:2])
    assert (torch_major, vision_major) == (2, 0) and vision_minor == torch_minor + 15, pins

    dockerfile, makefile = DOCKERFILE.read_text(), (PROJECT / "Makefile").read_text()
    assert "COPY deploy/constraints.txt" in dockerfile
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs and all("-c /tmp/constraints.txt" in line for line in installs), installs
    assert re.search(r"^CONSTRAINTS\s*\?=\s*deploy/constraints.txt$", makefile, re.M)
    assert "-c $(CONSTRAINTS)" in makefile
    for path in (DOCKERFILE, PROJECT / "Makefile", PROJECT / "pyproject.toml", PROJECT / "docker-compose.yml"):
        assert not re.search(r"torch(vision)?\s*==", path.read_text()), f"{path.name} pins torch itself"
