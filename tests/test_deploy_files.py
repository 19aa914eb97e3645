"""The deploy files parse, and every variable they set is one the code reads (and the ones
it needs are there)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from services.server.settings import ServiceSettings as Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
# Variables read by libraries we use rather than by our settings object.
LIBRARY_VARS = {
    "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
}  # fmt: skip


def _settings_vars() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"SELFIE_{name.upper()}")
        alias = field.validation_alias
        if alias is not None:
            names.update(str(a) for a in getattr(alias, "choices", [alias]))
    return names


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())


def _k8s_docs() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "kuberay").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _k8s_env() -> dict[str, set[str]]:
    """Variables per workload: explicit env, plus the ConfigMap and Secret it mounts."""
    docs = _k8s_docs()
    maps = {d["metadata"]["name"]: set(d.get("data", {}) or d.get("stringData", {}))
            for d in docs if d["kind"] in ("ConfigMap", "Secret")}  # fmt: skip
    out: dict[str, set[str]] = {}

    def containers(node):
        if isinstance(node, dict):
            if "containers" in node:
                yield from node["containers"]
            for value in node.values():
                yield from containers(value)
        elif isinstance(node, list):
            for item in node:
                yield from containers(item)

    for d in docs:
        if d["kind"] in ("RayCluster", "Deployment"):
            names: set[str] = set()
            for c in containers(d["spec"]):
                names |= {e["name"] for e in c.get("env", [])}
                for src in c.get("envFrom", []):
                    ref = src.get("configMapRef") or src.get("secretRef")
                    names |= maps[ref["name"]]
            out[d["metadata"]["name"]] = names
    return out


def test_every_variable_is_read_by_the_code() -> None:
    known = _settings_vars() | LIBRARY_VARS
    compose_vars = set()
    for svc in _compose()["services"].values():
        compose_vars |= set(svc.get("environment", {}) or {})
    ours = {v for v in compose_vars if v.startswith(("SELFIE_", "RAY_", "MLFLOW_", "AWS_"))}
    assert ours - known == set(), f"compose sets variables nothing reads: {ours - known}"
    for workload, names in _k8s_env().items():
        assert names - known == set(), f"{workload} sets unread variables: {names - known}"


def test_what_the_code_needs_is_set() -> None:
    services = _compose()["services"]
    needed_service = {
        "SELFIE_API_TOKEN", "SELFIE_RAY_DASHBOARD_URL", "SELFIE_DATABASE_URL",
        "MLFLOW_TRACKING_URI", "SELFIE_STORAGE_PATH", "SELFIE_ENVIRONMENT",
    }  # fmt: skip
    assert needed_service <= set(services["service"]["environment"])
    for node in ("ray-head", "ray-worker"):
        assert {"MLFLOW_TRACKING_URI", "SELFIE_STORAGE_PATH"} <= set(services[node]["environment"])
    k8s = _k8s_env()
    assert needed_service <= k8s["selfie-service"]
    assert {"MLFLOW_TRACKING_URI", "SELFIE_STORAGE_PATH"} <= k8s["selfie"]


def test_compose_waits_for_health_and_fails_loudly() -> None:
    text = (DEPLOY / "compose" / "compose.yaml").read_text()
    for var in ("SELFIE_API_TOKEN", "RAY_AUTH_TOKEN", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert re.search(r"\$\{" + var + r":\?", text), f"{var} must be required"
    for name, svc in _compose()["services"].items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        assert all("condition" in d for d in deps.values()), name


def test_kuberay_probes_and_rayjob() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _k8s_docs()}
    cluster = docs[("RayCluster", "selfie")]["spec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["readinessProbe"]["httpGet"]["port"] == 8265
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == "1"
    assert all(g["minReplicas"] <= g["maxReplicas"] for g in groups.values())
    service = docs[("Deployment", "selfie-service")]["spec"]["template"]["spec"]
    assert service["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/healthz"
    job = docs[("RayJob", "selfie-pipeline-cifar10")]["spec"]
    env = yaml.safe_load(job["runtimeEnvYAML"])["env_vars"]
    from pipelines.specs import PipelineSpec
    from pipelines.specs.transport import decode_spec

    PipelineSpec.model_validate(
        decode_spec(env["SELFIE_JOB_SPEC_B64"], env["SELFIE_JOB_SPEC_SHA256"])
    )
    assert env["SELFIE_DATA_ROOTS"]
    assert job["entrypoint"] == "python -m pipelines.cli.job_entry"


def test_dockerfile_installs_the_project_with_its_pins() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "COPY pyproject.toml" in text and re.search(r"pip install .* \. ", text)
    assert "HEALTHCHECK" in text and "selfie" in text


def _ray_pod_specs() -> list[tuple[str, dict, dict]]:
    """(group, rayStartParams, pod spec) for every Ray pod template of the RayCluster."""
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _k8s_docs()}
    cluster = docs[("RayCluster", "selfie")]["spec"]
    head = cluster["headGroupSpec"]
    out = [("head", head.get("rayStartParams", {}), head["template"]["spec"])]
    for group in cluster["workerGroupSpecs"]:
        out.append((group["groupName"], group["rayStartParams"], group["template"]["spec"]))
    return out


def _start_resources(params: dict) -> dict:
    """KubeRay's `resources` start param: a JSON object inside a quoted string."""
    raw = params.get("resources")
    return json.loads(raw.strip('"').replace('\\"', '"')) if raw else {}


def test_every_ray_pod_mounts_shared_memory() -> None:
    for group, _, pod in _ray_pod_specs():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/dev/shm" in mounts, f"{group}: no /dev/shm mount"
            assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory", group


def test_drivers_run_on_worker_groups_and_gpus_are_requested() -> None:
    from services.server.ray_backend import entrypoint_resources, local_head_resources

    config = {d["metadata"]["name"]: d for d in _k8s_docs() if d["kind"] == "ConfigMap"}
    name = config["selfie-config"]["data"]["SELFIE_DRIVER_RESOURCE"]
    asked = entrypoint_resources(Settings(driver_resource=name))
    assert asked == {"entrypoint_num_cpus": 1, "entrypoint_resources": {name: 1}}
    assert entrypoint_resources(Settings()) == {"entrypoint_num_cpus": 1}
    # The development head the service starts carries the resource, so dev still runs jobs.
    flags = local_head_resources(Settings(driver_resource=name))
    assert flags[0] == "--resources" and json.loads(flags[1])[name] >= 1
    assert local_head_resources(Settings()) == []
    groups = {g: (params, pod) for g, params, pod in _ray_pod_specs()}
    head_params, _ = groups.pop("head")
    assert head_params["num-cpus"] == "0" and name not in _start_resources(head_params)
    for group, (params, _pod) in groups.items():
        assert _start_resources(params).get(name, 0) >= 1, f"{group} carries no {name}"
    gpu = groups["gpu"][1]["containers"][0]["resources"]
    assert gpu["requests"]["nvidia.com/gpu"] == gpu["limits"]["nvidia.com/gpu"] == "1"
    job = next(d for d in _k8s_docs() if d["kind"] == "RayJob")["spec"]
    assert json.loads(job["entrypointResources"]) == {name: 1}
    assert job["entrypointNumCpus"] >= 1
    services = _compose()["services"]
    assert services["service"]["environment"]["SELFIE_DRIVER_RESOURCE"] == name
    assert f'{{"{name}":' in services["ray-worker"]["command"]


SERVICE_ONLY = {"SELFIE_API_TOKEN", "SELFIE_DATABASE_URL", "POSTGRES_PASSWORD"}


def test_compose_keeps_the_api_token_apart_from_ray() -> None:
    """The API token was also Ray's admin token (RAY_AUTH_TOKEN: ${SELFIE_API_TOKEN}) and
    so sat on every Ray node: now Ray has its own required secret, and the API token and the
    job store's URL stay with the service."""
    services = _compose()["services"]
    ray_token = services["service"]["environment"]["RAY_AUTH_TOKEN"]
    assert ray_token.startswith("${RAY_AUTH_TOKEN:?"), ray_token
    assert services["service"]["environment"]["SELFIE_API_TOKEN"].startswith("${SELFIE_API_TOKEN:?")
    for node in ("ray-head", "ray-worker"):
        env = services[node]["environment"]
        assert env["RAY_AUTH_TOKEN"] == ray_token
        assert not SERVICE_ONLY & set(env), f"{node} holds {SERVICE_ONLY & set(env)}"
        assert not any("SELFIE_API_TOKEN" in str(v) for v in env.values()), node


def _secret_refs(containers: list[dict]) -> set[tuple[str, str]]:
    refs = set()
    for c in containers:
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
    return refs


def test_kuberay_pods_get_only_the_secrets_they_need() -> None:
    """Every Ray pod loaded all of `selfie-secrets` (API token and job store URL included),
    and the shipped Secret held `change-me` values that production accepted."""
    from services.server.settings import SHIPPED_SECRETS

    docs = _k8s_docs()
    for d in docs:
        if d["kind"] == "Secret":
            values = (d.get("stringData") or {}) | (d.get("data") or {})
            assert not values, f"Secret {d['metadata']['name']} ships values: {sorted(values)}"
    for _group, _params, pod in _ray_pod_specs():
        for c in pod["containers"]:
            assert not [s for s in c.get("envFrom", []) if "secretRef" in s], "a whole secret"
    pods = {group: _secret_refs(pod["containers"]) for group, _p, pod in _ray_pod_specs()}
    assert pods["head"] == {("selfie-ray-auth", "RAY_AUTH_TOKEN")}
    for group in ("cpu", "gpu"):
        assert {key for _, key in pods[group]} == {
            "RAY_AUTH_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
        }, group  # fmt: skip
        assert not {key for _, key in pods[group]} & SERVICE_ONLY
    service = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    refs = _secret_refs(service["containers"])
    assert ("selfie-api", "SELFIE_API_TOKEN") in refs
    assert ("selfie-ray-auth", "RAY_AUTH_TOKEN") in refs
    text = "".join(p.read_text() for p in (DEPLOY / "kuberay").glob("*.yaml"))
    assert "change-me" not in text and "change-me" in SHIPPED_SECRETS
