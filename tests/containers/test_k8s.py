"""The Kubernetes manifests: rendered by kustomize, validated offline, scanned by checkov.

No cluster runs here. `kubectl kustomize` (kustomize built into kubectl) renders each
overlay; kubernetes-validate checks every object against the API schemas of the two
newest Kubernetes minor versions it ships; checkov scans the rendered objects; the
PrometheusRule's groups go through `promtool check rules`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.containers.conftest import REPO, TOOLS_BIN, missing, tool

K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("staging", "production")
CRDS = {"ServiceMonitor", "PrometheusRule"}  # no schema offline: checked below instead


@cache
def _render(overlay: str) -> str:
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def rendered(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects, as kustomize renders them."""
    return [d for d in yaml.safe_load_all(_render(overlay)) if d]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of a kind (and name)."""
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


@cache
def newest_kubernetes_versions(count: int = 2) -> list[str]:
    """The newest minor versions whose schemas kubernetes-validate ships."""
    python = TOOLS_BIN / "python"
    if not python.exists():
        missing("kubernetes-validate not found (make tools-venv installs it into .venv-tools)")
    out = subprocess.run(
        [str(python), "-c", "import kubernetes_validate.utils as u; print(u.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    schema_dir = Path(out).parent / "kubernetes-json-schema"
    versions = {
        m.group(1)
        for p in schema_dir.iterdir()
        if (m := re.fullmatch(r"v(\d+\.\d+\.\d+)-local", p.name))
    }
    return sorted(versions, key=lambda v: tuple(int(x) for x in v.split(".")))[-count:]


@pytest.fixture(scope="module")
def render_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each overlay rendered into its own file."""
    folder = tmp_path_factory.mktemp("rendered")
    for overlay in OVERLAYS:
        (folder / f"{overlay}.yaml").write_text(_render(overlay))
    return folder


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_part(overlay: str) -> None:
    """kustomize renders the bridge and everything around it, in the overlay's namespace."""
    objects = rendered(overlay)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Job",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "StatefulSet",
        ]
    )
    namespace = {"staging": "cultivai-staging", "production": "cultivai"}[overlay]
    assert {o["metadata"].get("namespace") for o in objects} == {namespace}


@pytest.mark.parametrize("newest", [0, 1], ids=["newest-minor", "second-newest-minor"])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_valid_for_kubernetes(overlay: str, newest: int, render_dir: Path) -> None:
    """Every object passes strict schema validation (no unknown fields) for that version."""
    version = newest_kubernetes_versions()[-1 - newest]
    done = subprocess.run(
        [
            tool("kubernetes-validate"),
            "--strict",
            "-k",
            version,
            str(render_dir / f"{overlay}.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    print(output)
    assert done.returncode == 0, output
    passed = re.findall(r"passed for resource (\w+)/", output)
    assert len(passed) == len(rendered(overlay)) - len(CRDS), output
    for kind in CRDS:
        assert f"Couldn't find schema for kind {kind}" in output


def test_checkov_finds_nothing(render_dir: Path) -> None:
    """checkov's Kubernetes checks all pass or are skipped with a reason in the manifest."""
    done = subprocess.run(
        [
            tool("checkov"),
            "--quiet",
            "--compact",
            "--skip-download",  # offline: no Prisma Cloud guideline look-ups
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--directory",
            str(render_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=render_dir,
    )
    report = json.loads(done.stdout)
    summary = report["summary"] if isinstance(report, dict) else report[0]["summary"]
    print(summary)
    assert summary["parsing_errors"] == 0
    assert summary["failed"] == 0, done.stdout[-4000:]
    assert summary["passed"] > 100
    results = report["results"] if isinstance(report, dict) else report[0]["results"]
    for check in results.get("skipped_checks", []):
        assert check["check_id"] == "CKV_K8S_43", check  # image digest: pinned at release
        assert check["check_result"].get("suppress_comment")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_bridge_pods_are_locked_down(overlay: str) -> None:
    """Non-root, read-only root, no capabilities, probes, requests and limits, in bridge and job."""
    objects = rendered(overlay)
    for kind, name in (("StatefulSet", "cultivai-bridge"), ("Job", "cultivai-bridge-migrate")):
        pod = one(objects, kind, name)["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert ctx["runAsUser"] == 10001
            assert set(container["resources"]) == {"requests", "limits"}
            assert container["image"].startswith("registry.example.net/cultivai/bridge:")
    bridge = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert bridge["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert bridge["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_bridge_has_its_own_stable_broker_identity(overlay: str) -> None:
    """Client id, broker user and password file all follow the StatefulSet pod's name."""
    objects = rendered(overlay)
    sts = one(objects, "StatefulSet")
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["CULTIVAI_BRIDGE__MQTT__CLIENT_ID"]["value"] == "$(POD_NAME)"
    assert env["CULTIVAI_BRIDGE__MQTT__USERNAME"]["value"] == "$(POD_NAME)"
    assert env["CULTIVAI_BRIDGE__MQTT__PASSWORD_FILE"]["value"].endswith("/$(POD_NAME)")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_sets_its_bridge_count_and_nothing_autoscales(overlay: str) -> None:
    """Every bridge receives every message: more replicas add redundancy, not throughput,
    so no autoscaler owns the count (an apply would fight it); the overlay sets it."""
    objects = rendered(overlay)
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    replicas = one(objects, "StatefulSet")["spec"]["replicas"]
    assert replicas == {"staging": 1, "production": 2}[overlay]


def _group_can_read_only(mode: int) -> bool:
    return mode & 0o040 != 0 and mode & 0o004 == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_mounting_group_readable_secrets_set_their_group(overlay: str) -> None:
    """A Secret mounted with mode 0440 is readable by a non-root pod only through fsGroup."""
    checked = 0
    for obj in rendered(overlay):
        template = obj.get("spec", {}).get("template")
        if template is None:
            continue
        pod = template["spec"]
        for volume in pod.get("volumes", []):
            secret = volume.get("secret")
            if secret is None:
                continue
            modes = [secret.get("defaultMode", 0o644)]
            modes += [item["mode"] for item in secret.get("items", []) if "mode" in item]
            if not any(_group_can_read_only(m) for m in modes):
                continue
            checked += 1
            ctx = pod.get("securityContext", {})
            name = f"{obj['kind']}/{obj['metadata']['name']} volume {volume['name']}"
            assert ctx.get("fsGroup") is not None, f"{name}: mode 0440 but no fsGroup"
            for container in pod["containers"]:
                group = container.get("securityContext", {}).get(
                    "runAsGroup", ctx.get("runAsGroup")
                )
                assert group == ctx["fsGroup"], f"{name}: runs as group {group}"
    assert checked >= 2  # the bridges' and the migration's secrets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_bridge_config_loads_as_the_bridge_reads_it(overlay: str, tmp_path: Path) -> None:
    """The ConfigMap's bridge.yaml, with the pod's environment, is a valid bridge config."""
    from cloud_bridge.config import config_from_data

    objects = rendered(overlay)
    data = yaml.safe_load(one(objects, "ConfigMap")["data"]["bridge.yaml"])
    env = {
        "CULTIVAI_BRIDGE__MQTT__CLIENT_ID": "cultivai-bridge-0",
        "CULTIVAI_BRIDGE__MQTT__USERNAME": "cultivai-bridge-0",
        "CULTIVAI_BRIDGE__MQTT__PASSWORD_FILE": "/etc/cultivai/mqtt/cultivai-bridge-0",
    }
    config = config_from_data(data, env=env)
    assert config.mqtt.client_id == "cultivai-bridge-0"
    assert config.mqtt.tls is not None
    assert config.database.url.startswith("postgresql+psycopg://")
    assert config.http.token_file is not None
    sts = one(objects, "StatefulSet")
    mounts = {
        m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    for needed in (
        config.mqtt.tls.ca_file.parent,
        config.database.password_file.parent if config.database.password_file else None,
        config.http.token_file.parent,
    ):
        assert str(needed) in mounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_allows_only_broker_database_and_dns(overlay: str) -> None:
    """Egress: MQTT over TLS, PostgreSQL, DNS; nothing else."""
    policy = one(rendered(overlay), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ports = sorted(
        (p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]
    )
    assert ports == [(53, "TCP"), (53, "UDP"), (5432, "TCP"), (8883, "TCP")]
    assert all(rule.get("to") for rule in policy["spec"]["egress"])


def test_prometheusrule_matches_the_rule_files() -> None:
    """base/prometheusrule.yaml is what deploy/prometheus/rules/*.yml give."""
    rules_dir = REPO / "deploy" / "prometheus" / "rules"
    if not any(rules_dir.glob("*.yml")):
        pytest.skip(f"no rule files in {rules_dir.relative_to(REPO)} yet")
    done = subprocess.run(
        [sys.executable, str(K8S / "prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheusrule_groups_pass_promtool(tmp_path: Path) -> None:
    """The PrometheusRule's groups are a valid rule file for Prometheus itself."""
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool not found (make system-deps installs prometheus)")
    assert promtool is not None
    rule = one(rendered("production"), "PrometheusRule")
    assert rule["spec"]["groups"], "no rule groups"
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
