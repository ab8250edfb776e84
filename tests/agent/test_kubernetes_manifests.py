"""vault-config/kubernetes/: the manifests carry what the injector, the operator and the Helm chart read, with
paths that match the engine's mount, and the Helm values' plugin block really installs the plugin.

No Kubernetes runs here. The field and key names checked against are those of the projects' sources read for
this: hashicorp/vault-k8s (agent-inject/agent/annotations.go), hashicorp/vault-secrets-operator
(api/v1beta1/*_types.go) and openbao/openbao-helm chart 0.29 (charts/openbao/values.yaml, templates/).
A name outside those sets is a typo the real tools would silently ignore.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from agent_support import AGENT_CONFIG_DIR, REPO_ROOT, BuiltEngine
from devkit.bao import BaoServer, bao_binary, kill_leftovers
from devkit.build import ENGINE_NAME
from devkit.oci import build_image, push
from devkit.oci_registry import OciRegistry
from llmsecrets.secret_api_key import RESPONSE_FIELDS
from llmsecrets.version import VERSION

pytestmark = pytest.mark.timeout(120)

K8S_DIR = REPO_ROOT / "vault-config" / "kubernetes"
MOUNT = "llm"
CREDS_PATH_RE = re.compile(rf"^{MOUNT}/creds/[A-Za-z0-9_.-]+$")
# Fields every creds response carries (expires_at only where the provider expires keys itself): a template
# may use only these, since error_on_missing_key fails the render on any other.
ALWAYS_RETURNED = set(RESPONSE_FIELDS) - {"expires_at"}

# vault-k8s annotations (without a per-file suffix, or the prefix before -<file>).
INJECTOR = "vault.hashicorp.com/"
INJECTOR_ANNOTATIONS = {
    "agent-inject",
    "role",
    "auth-path",
    "auth-type",
    "agent-cache-enable",
    "agent-inject-containers",
    "agent-pre-populate",
    "agent-pre-populate-only",
    "agent-revoke-on-shutdown",
    "template-config-exit-on-retry-failure",
    "template-static-secret-render-interval",
    "tls-secret",
    "ca-cert",
    "service",
    "log-level",
}
INJECTOR_FILE_ANNOTATIONS = {
    "agent-inject-secret",
    "agent-inject-template",
    "agent-inject-file",
    "agent-inject-perms",
    "agent-inject-command",
    "error-on-missing-key",
}

# vault-secrets-operator v1beta1 spec fields.
VSO_FIELDS = {
    "VaultConnection": {
        "address",
        "headers",
        "tlsServerName",
        "caCertSecretRef",
        "caCertPath",
        "skipTLSVerify",
    },
    "VaultAuth": {
        "vaultConnectionRef",
        "vaultAuthGlobalRef",
        "namespace",
        "allowedNamespaces",
        "method",
        "mount",
        "params",
        "headers",
        "kubernetes",
        "appRole",
        "jwt",
        "aws",
        "gcp",
        "storageEncryption",
    },
    "VaultDynamicSecret": {
        "vaultAuthRef",
        "namespace",
        "mount",
        "requestHTTPMethod",
        "path",
        "params",
        "renewalPercent",
        "revoke",
        "allowStaticCreds",
        "rolloutRestartTargets",
        "destination",
        "refreshAfter",
    },
}
VSO_KUBERNETES_AUTH_FIELDS = {"role", "serviceAccount", "audiences", "tokenExpirationSeconds"}
VSO_DESTINATION_FIELDS = {"name", "create", "overwrite", "labels", "annotations", "type", "transformation"}
VSO_TRANSFORMATION_FIELDS = {"templates", "transformationRefs", "includes", "excludes", "excludeRaw"}

# openbao-helm values this file may set (leaf paths; lists and the config string count as leaves).
HELM_VALUE_PATHS = {
    "global.enabled",
    "injector.enabled",
    "injector.agentImage.registry",
    "injector.agentImage.repository",
    "injector.agentImage.tag",
    "server.image.registry",
    "server.image.repository",
    "server.image.tag",
    "server.volumes",
    "server.volumeMounts",
    "server.extraInitContainers",
    "server.extraEnvironmentVars",
    "server.auditStorage.enabled",
    "server.dataStorage.enabled",
    "server.ha.enabled",
    "server.ha.replicas",
    "server.ha.raft.enabled",
    "server.ha.raft.setNodeId",
    "server.ha.raft.config",
}
HELM_CONFIG_FILE = (
    "/openbao/config/extraconfig-from-values.hcl"  # where the chart mounts the config ConfigMap
)
HELM_SED_WORDS = ("HOSTNAME", "POD_IP", "HOST_IP", "API_ADDR", "TRANSIT_ADDR", "RAFT_ADDR")


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S_DIR / name).read_text()) if d]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def sidecar_template() -> str:
    """The `contents` heredoc of sidecar.hcl's template, as the agent reads it (the agent's HCL strips the
    indentation of the closing marker from every line)."""
    text = (AGENT_CONFIG_DIR / "sidecar.hcl").read_text()
    match = re.search(r"contents\s*=\s*<<-EOT\n(.*?\n)( *)EOT\n", text, re.DOTALL)
    assert match, "sidecar.hcl has no `contents = <<-EOT` template"
    indent = match.group(2)
    return "".join(line.removeprefix(indent) for line in match.group(1).splitlines(keepends=True))


def sidecar_setting(name: str) -> str:
    match = re.search(rf'^\s*{name}\s*=\s*"([^"]+)"', (AGENT_CONFIG_DIR / "sidecar.hcl").read_text(), re.M)
    assert match, f"sidecar.hcl sets no {name}"
    return match.group(1)


def data_fields(template: str) -> set[str]:
    return set(re.findall(r"\.Data\.(\w+)", template))


# --- the injector ------------------------------------------------------------------------------------------


def test_injector_annotations_render_the_engine_creds_for_the_app() -> None:
    docs = documents("deployment-injector.yaml")
    deployment = only(docs, "Deployment")
    pod = deployment["spec"]["template"]
    annotations: dict[str, str] = pod["metadata"]["annotations"]
    assert all(isinstance(v, str) for v in annotations.values()), "annotation values must be strings"

    names = [k.removeprefix(INJECTOR) for k in annotations if k.startswith(INJECTOR)]
    for name in names:
        base = next((p for p in INJECTOR_FILE_ANNOTATIONS if name.startswith(p + "-")), name)
        assert base in INJECTOR_ANNOTATIONS | INJECTOR_FILE_ANNOTATIONS, f"unknown annotation {name}"
    assert "template-lease-renewal-threshold" not in names  # OpenBao's agent has no such setting

    assert annotations[INJECTOR + "agent-inject"] == "true"
    # The same login as the shipped sidecar: auth mount, role, and the service account the role binds.
    assert annotations[INJECTOR + "role"] == sidecar_setting("role")
    assert annotations[INJECTOR + "auth-path"] == sidecar_setting("mount_path")
    account = only(docs, "ServiceAccount")["metadata"]
    assert pod["spec"]["serviceAccountName"] == account["name"]
    assert account["namespace"] == deployment["metadata"]["namespace"]
    # One lease per pod: the init agent's lease is renewed by the sidecar (a persistent cache).
    assert annotations[INJECTOR + "agent-cache-enable"] == "true"
    containers = {c["name"] for c in pod["spec"]["containers"]}
    assert set(annotations[INJECTOR + "agent-inject-containers"].split(",")) <= containers

    secrets = {
        n.removeprefix("agent-inject-secret-"): annotations[INJECTOR + n]
        for n in names
        if n.startswith("agent-inject-secret-")
    }
    assert secrets, "no agent-inject-secret-<file> annotation"
    for file, path in secrets.items():
        assert CREDS_PATH_RE.match(path), f"{file}: {path} is not {MOUNT}/creds/<role>"
        template = annotations[INJECTOR + f"agent-inject-template-{file}"]
        assert f'secret "{path}"' in template
        assert "api_key" in data_fields(template)
        assert data_fields(template) <= ALWAYS_RETURNED, data_fields(template) - ALWAYS_RETURNED
        assert annotations.get(INJECTOR + f"error-on-missing-key-{file}") == "true"
        # The very template sidecar.hcl renders, which tests/agent proves with a real agent.
        assert template == sidecar_template()


# --- the Vault Secrets Operator ----------------------------------------------------------------------------


def test_vault_dynamic_secret_reads_the_engine_creds_and_restarts_the_app() -> None:
    docs = documents("vault-dynamic-secret.yaml")
    for doc in docs:
        if doc["apiVersion"].startswith("secrets.hashicorp.com/"):
            assert doc["apiVersion"] == "secrets.hashicorp.com/v1beta1"
            unknown = set(doc["spec"]) - VSO_FIELDS[doc["kind"]]
            assert not unknown, f"{doc['kind']}: unknown spec fields {unknown}"
    connection = only(docs, "VaultConnection")
    auth = only(docs, "VaultAuth")
    secret = only(docs, "VaultDynamicSecret")
    namespace = secret["metadata"]["namespace"]
    assert auth["metadata"]["namespace"] == connection["metadata"]["namespace"] == namespace

    spec = secret["spec"]
    assert spec["mount"] == MOUNT
    assert CREDS_PATH_RE.match(f"{spec['mount']}/{spec['path']}")
    assert 0 <= spec["renewalPercent"] <= 90  # the CRD's bounds
    assert spec["vaultAuthRef"] == auth["metadata"]["name"]

    auth_spec = auth["spec"]
    assert auth_spec["vaultConnectionRef"] == connection["metadata"]["name"]
    assert auth_spec["method"] == "kubernetes"
    # The same auth mount and role as the shipped agents (the operator's `mount` has no auth/ prefix).
    assert f"auth/{auth_spec['mount']}" == sidecar_setting("mount_path")
    assert set(auth_spec["kubernetes"]) <= VSO_KUBERNETES_AUTH_FIELDS
    assert auth_spec["kubernetes"]["role"] == sidecar_setting("role")
    assert connection["spec"]["address"].startswith("https://")

    destination = spec["destination"]
    assert set(destination) <= VSO_DESTINATION_FIELDS
    assert set(destination["transformation"]) <= VSO_TRANSFORMATION_FIELDS
    templates = destination["transformation"]["templates"]
    used = {m for t in templates.values() for m in re.findall(r'get \.Secrets "(\w+)"', t["text"])}
    assert "api_key" in used and used <= ALWAYS_RETURNED
    assert re.search(r'get \.Secrets "api_key"', templates["OPENAI_API_KEY"]["text"])

    # The restart target is a Deployment in the file whose pods read the destination Secret.
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert spec["rolloutRestartTargets"], "an app that reads its key at start must be restarted"
    for target in spec["rolloutRestartTargets"]:
        assert target["kind"] in {"Deployment", "DaemonSet", "StatefulSet", "argo.Rollout"}
        pod = deployments[target["name"]]["spec"]["template"]["spec"]
        sources = [e["secretRef"]["name"] for c in pod["containers"] for e in c.get("envFrom", [])]
        assert destination["name"] in sources
        assert pod["serviceAccountName"] == auth_spec["kubernetes"]["serviceAccount"]


# --- the Helm chart ----------------------------------------------------------------------------------------


def helm_values() -> dict[str, Any]:
    values = yaml.safe_load((K8S_DIR / "openbao-helm-values.yaml").read_text())
    assert isinstance(values, dict)
    return values


def leaf_paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaf_paths(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def plugin_block(hcl: str) -> str:
    match = re.search(r'^plugin "secret" "([^"]+)" \{\n.*?^\}\n', hcl, re.M | re.S)
    assert match, 'no plugin "secret" block at the top level of the server config'
    return match.group(0)


def hcl_attribute(hcl: str, name: str) -> str:
    match = re.search(rf'^\s*{name}\s*=\s*"([^"]*)"', hcl, re.M)
    assert match, f"no {name} in {hcl!r}"
    return match.group(1)


def init_container(values: dict[str, Any]) -> dict[str, Any]:
    containers = values["server"]["extraInitContainers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_helm_values_put_the_plugin_where_the_server_config_looks() -> None:
    values = helm_values()
    unknown = set(leaf_paths(values)) - HELM_VALUE_PATHS
    assert not unknown, f"not value keys of the openbao chart: {unknown}"
    server = values["server"]
    assert server["ha"]["raft"]["enabled"] is True
    config = server["ha"]["raft"]["config"]
    # The chart runs the config through `tpl` and a sed of these words: neither may touch it.
    assert "{{" not in config
    assert not [w for w in HELM_SED_WORDS if w in config]

    block = plugin_block(config)
    assert block.startswith(f'plugin "secret" "{ENGINE_NAME}"')
    assert hcl_attribute(block, "version") == VERSION
    assert hcl_attribute(block, "binary_name") == ENGINE_NAME
    assert hcl_attribute(config, "plugin_directory") == "/openbao/plugins"
    assert re.search(r"^plugin_auto_register\s*=\s*true$", config, re.M)
    assert not re.search(r"^plugin_auto_download\s*=\s*true", config, re.M), "the init container downloads"

    # One emptyDir, written by the init container and mounted read-only by the server as plugin_directory.
    volumes = {v["name"]: v for v in server["volumes"]}
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert volumes["plugins"] == {"name": "plugins", "emptyDir": {}}
    assert mounts["plugins"]["mountPath"] == hcl_attribute(config, "plugin_directory")
    assert mounts["plugins"]["readOnly"] is True
    init = init_container(values)
    init_mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert init_mounts["plugins"]["mountPath"] == mounts["plugins"]["mountPath"]
    assert not init_mounts["plugins"].get("readOnly")
    assert init_mounts["config"]["mountPath"] == str(Path(HELM_CONFIG_FILE).parent)  # the chart's volume
    assert init["command"][:3] == ["bao", "plugin", "init"]
    assert f"-config={HELM_CONFIG_FILE}" in init["command"]
    assert f"-directory={mounts['plugins']['mountPath']}" in init["command"]
    # The server's own image, through the chart's `tpl` on extraInitContainers.
    image = "{{ .Values.server.image.registry }}/{{ .Values.server.image.repository }}"
    assert init["image"] == image + ":{{ .Values.server.image.tag }}"


def test_helm_plugin_block_installs_the_plugin(engine: BuiltEngine, tmp_path: Path) -> None:
    """The chart's flow without Kubernetes: the init container's command on the values' server config (only
    the registry, the sha256 placeholder and the two directories replaced) pulls the plugin from a registry on
    127.0.0.1; a server given the config's plugin settings registers it from that directory and mounts it."""
    values = helm_values()
    config = values["server"]["ha"]["raft"]["config"]
    block = plugin_block(config)
    plugin_dir = tmp_path / "plugins"
    image = build_image(engine.path, tag=VERSION)
    with OciRegistry() as registry:
        repository = hcl_attribute(block, "image").split("/", 1)[1]
        push(image, f"{registry.host}/{repository}:{VERSION}")
        filled = (
            config.replace(hcl_attribute(block, "image"), f"{registry.host}/{repository}")
            .replace(hcl_attribute(block, "sha256sum"), engine.sha256)
            .replace('"/openbao/plugins"', json.dumps(str(plugin_dir)))
        )
        config_file = tmp_path / "extraconfig-from-values.hcl"
        config_file.write_text(filled)
        command = [
            arg.replace(HELM_CONFIG_FILE, str(config_file)).replace("/openbao/plugins", str(plugin_dir))
            for arg in init_container(values)["command"]
        ]
        assert command[0] == "bao"
        init = subprocess.run(
            [bao_binary(), *command[1:]], capture_output=True, text=True, timeout=90, cwd=tmp_path
        )
        assert init.returncode == 0, init.stdout + init.stderr
    assert (plugin_dir / f"secret-{ENGINE_NAME}-{VERSION}").is_file()

    # The server side: plugin_directory (BaoServer writes it) plus the config's other plugin settings.
    server_block = plugin_block(filled)
    server = BaoServer(
        tmp_path / "bao", plugin_dir, extra_config="plugin_auto_register = true\n" + server_block
    )
    pids: list[int] = []
    try:
        server.start()
        http = httpx.Client(base_url=f"{server.addr}/v1/", headers={"X-Vault-Token": server.root_token})
        with http:
            entry = http.get(f"sys/plugins/catalog/secret/{ENGINE_NAME}", params={"version": VERSION})
            assert entry.status_code == 200, entry.text
            catalog = entry.json()["data"]
            assert (catalog["version"], catalog["sha256"]) == (VERSION, engine.sha256)
            resp = http.post(f"sys/mounts/{MOUNT}", json={"type": ENGINE_NAME})
            assert resp.status_code == 204, resp.text
            mount = http.get(f"sys/mounts/{MOUNT}").json()["data"]
            assert mount["running_plugin_version"] == VERSION
            pids = server.plugin_pids(plugin_dir)
    finally:
        server.stop()
        survivors = kill_leftovers(pids, timeout=10)
    assert not survivors, f"plugin processes {survivors} outlived the server"
