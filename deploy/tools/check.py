#!/usr/bin/env python3
"""Offline checks of deploy/ (run through scripts/deploy-check.sh, which sets up the venv).

  check.py --root <repo> [--renderer auto|kustomize|kubectl|python] [--k8s-version 1.32]

Renders every overlay under deploy/overlays/, then checks:
- every rendered object (and deploy/alerts.yaml, deploy/maintenance/*.yaml) against the
  Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields are errors), and
  the Prometheus Operator kinds against deploy/schemas/*.json;
- the workload policy: image, requests and limits, probes, non-root, read-only root
  filesystem, no privilege escalation, capabilities dropped, seccomp RuntimeDefault;
- wiring: volumes, Secrets and ConfigMaps referenced exist (or are in EXTERNAL_SECRETS),
  Service/PDB/NetworkPolicy/ServiceMonitor selectors and ports match the pods;
- waybill.toml and catalog.toml in the ConfigMaps against the structs in
  crates/server/src/config.rs and crates/control/src/config.rs (their serde
  `deny_unknown_fields` would stop start-up), ports and paths against the pod spec;
- every PromQL expression in the dashboard and the alerts parses (promql-parser) and
  names only metrics of crates/telemetry/src/metrics.rs (histograms as _bucket, _sum,
  _count) with their labels, plus the few in EXTERNAL_METRICS; and only metrics that are
  emitted: a `counter!`/`gauge!`/`histogram!` call in the non-test source of crates/
  names the metric's constant (or its name), so no alert waits on, and no panel shows, a
  series nothing writes; every emitted metric is on the dashboard; every alert has a
  runbook section in docs/operations.md and the other way round; every metric name in
  docs/operations.md exists;
- the Dockerfile's ports, user, volume, entrypoint and stop signal.

Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import jsonschema
import yaml

K8S_VERSION_DEFAULT = "1.32"

# Secrets that overlays/prod expects to be created out of band (docs/operations.md).
EXTERNAL_SECRETS = {"waybill-kafka", "waybill-control-tokens", "waybill-control-tls"}

# Metrics not exported by Waybill that the alerts may use, with where they come from.
EXTERNAL_METRICS = {
    "up": "Prometheus (scrape health)",
    "kubelet_volume_stats_available_bytes": "kubelet (PVC usage)",
    "kubelet_volume_stats_capacity_bytes": "kubelet (PVC usage)",
}

# Labels Prometheus adds to every scraped Waybill series (ServiceMonitor target labels).
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "endpoint", "container",
                 "app_kubernetes_io_name"}

# [sections] of waybill.toml that the code does not have yet (issue: Kafka backend and
# metrics endpoint). Reported as warnings; remove an entry once config.rs has it.
PENDING_SECTIONS: dict[str, str] = {}

WORKLOAD_KINDS = {"StatefulSet", "Deployment", "DaemonSet", "Job", "CronJob", "Pod"}


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.warnings = 0

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"  ok    {what}")

    def fail(self, what: str, why: str) -> None:
        self.failed += 1
        print(f"  FAIL  {what}: {why}")

    def warn(self, what: str, why: str) -> None:
        self.warnings += 1
        print(f"  WARN  {what}: {why}")

    def note(self, what: str) -> None:
        print(f"  note  {what}")

    def check(self, what: str, problems: list[str]) -> None:
        if problems:
            self.fail(what, "; ".join(problems))
        else:
            self.ok(what)


# ---------------------------------------------------------------- sources of truth

def load_metrics(root: str) -> dict[str, tuple[str, set[str]]]:
    text = open(os.path.join(root, "crates/telemetry/src/metrics.rs"), encoding="utf-8").read()
    out = {}
    for name, kind, labels in re.findall(r'^\s*[A-Z_]+\s*=\s*"(waybill_[a-z0-9_]+)",\s*(Counter|Gauge|Histogram),\s*\[([^\]]*)\]',
                                         text, re.M):
        out[name] = (kind, set(re.findall(r'"([^"]+)"', labels)))
    if not out:
        raise SystemExit("check.py: found no metric in crates/telemetry/src/metrics.rs (did its macro change?)")
    return out


EMIT_CALL = re.compile(r'\b(?:counter|gauge|histogram)!\s*\(\s*(?:(?:[A-Za-z_][A-Za-z0-9_]*::)*([A-Z][A-Z0-9_]*)\b|"(waybill_[a-z0-9_]+)")')


def strip_tests(text: str) -> str:
    """The source without its `#[cfg(test)]` modules (an emission in a test is not one)."""
    m = re.search(r"^\s*#\[cfg\(test\)\]\s*\n\s*mod \w+\s*\{", text, re.M)
    return text[: m.start()] if m else text


def load_emitted(root: str) -> dict[str, list[str]]:
    """Metric name -> the source files (under crates/, tests excluded) that emit it."""
    consts: dict[str, str] = {}
    text = open(os.path.join(root, "crates/telemetry/src/metrics.rs"), encoding="utf-8").read()
    for ident, name in re.findall(r'^\s*([A-Z][A-Z0-9_]*)\s*=\s*"(waybill_[a-z0-9_]+)"', text, re.M):
        consts[ident] = name
    out: dict[str, list[str]] = {}
    crates = os.path.join(root, "crates")
    for crate in sorted(os.listdir(crates)):
        src = os.path.join(crates, crate, "src")
        for d, _, files in os.walk(src):
            for f in sorted(files):
                if not f.endswith(".rs"):
                    continue
                path = os.path.join(d, f)
                body = strip_tests(open(path, encoding="utf-8").read())
                for ident, literal in EMIT_CALL.findall(body):
                    name = literal or consts.get(ident)
                    if name:
                        out.setdefault(name, []).append(os.path.relpath(path, root))
    return out


def rust_structs(*paths: str) -> dict[str, list[tuple[str, str]]]:
    structs: dict[str, list[tuple[str, str]]] = {}
    for p in paths:
        text = open(p, encoding="utf-8").read()
        for name, body in re.findall(r'pub struct (\w+)\s*\{(.*?)\n\}', text, re.S):
            fields = re.findall(r'^\s*pub (\w+):\s*([^,\n]+),', body, re.M)
            structs[name] = [(f, t.strip()) for f, t in fields]
    return structs


# ---------------------------------------------------------------- rendering

def render(root: str, overlay: str, how: str) -> list[dict]:
    path = os.path.join(root, "deploy/overlays", overlay)
    if how == "python":
        out = subprocess.run([sys.executable, os.path.join(root, "deploy/tools/render.py"), path],
                             capture_output=True, text=True)
    elif how == "kustomize":
        out = subprocess.run(["kustomize", "build", path], capture_output=True, text=True)
    else:
        out = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{how} could not render {overlay}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def key(o: dict) -> tuple[str, str]:
    return o.get("kind", "?"), (o.get("metadata") or {}).get("name", "?")


# ---------------------------------------------------------------- schemas

def validate_object(o: dict, version: str, crd_schemas: dict) -> list[str]:
    import kubernetes_validate
    api = o.get("apiVersion", "")
    if api.startswith("monitoring.coreos.com/"):
        schema = crd_schemas.get((api, o.get("kind")))
        if schema is None:
            return [f"no bundled schema for {o.get('kind')} {api} in deploy/schemas/"]
        errs = sorted(jsonschema.Draft202012Validator(schema).iter_errors(o), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errs[:5]]
    try:
        kubernetes_validate.validate(o, version, strict=True)
        return []
    except kubernetes_validate.utils.ValidationError as e:
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"]
    except kubernetes_validate.utils.SchemaNotFoundError as e:
        return [e.message]
    except (TypeError, KeyError) as e:
        return [f"not a Kubernetes object ({e})"]


def load_crd_schemas(root: str) -> dict:
    out = {}
    d = os.path.join(root, "deploy/schemas")
    for n in sorted(os.listdir(d)):
        if n.endswith(".json"):
            s = json.load(open(os.path.join(d, n), encoding="utf-8"))
            jsonschema.Draft202012Validator.check_schema(s)
            out[(s["properties"]["apiVersion"]["const"], s["properties"]["kind"]["const"])] = s
    return out


# ---------------------------------------------------------------- workload policy and wiring

def pod_spec(o: dict) -> dict | None:
    k = o.get("kind")
    spec = o.get("spec") or {}
    if k == "Pod":
        return spec
    if k == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    if k in WORKLOAD_KINDS:
        return (spec.get("template") or {}).get("spec")
    return None


def pod_labels(o: dict) -> dict:
    if o.get("kind") == "Pod":
        return (o.get("metadata") or {}).get("labels") or {}
    return (((o.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def policy_problems(o: dict, long_running: bool) -> list[str]:
    p: list[str] = []
    spec = pod_spec(o) or {}
    psc = spec.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        p.append("pod securityContext.runAsNonRoot must be true")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        p.append("pod securityContext.seccompProfile.type must be RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        p.append("automountServiceAccountToken must be false (Waybill does not use the API)")
    containers = spec.get("containers") or []
    if not containers:
        p.append("no containers")
    vols = {v.get("name") for v in spec.get("volumes") or []}
    vols |= {(t.get("metadata") or {}).get("name") for t in (o.get("spec") or {}).get("volumeClaimTemplates") or []}
    for c in containers + (spec.get("initContainers") or []):
        n = c.get("name", "?")
        if not c.get("image"):
            p.append(f"container {n} has no image")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    p.append(f"container {n} has no resources.{part}.{r}")
        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            p.append(f"container {n}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            p.append(f"container {n}: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            p.append(f"container {n}: privileged")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            p.append(f"container {n}: capabilities.drop must contain ALL")
        if (sc.get("capabilities") or {}).get("add"):
            p.append(f"container {n}: adds capabilities")
        named_ports = {pt.get("name") for pt in c.get("ports") or []}
        if long_running and c in containers:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    p.append(f"container {n} has no {probe}")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in named_ports:
                    p.append(f"container {n}: {probe} uses port {port!r}, which the container does not name")
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in vols:
                p.append(f"container {n} mounts undefined volume {m.get('name')!r}")
    return p


def wiring_problems(objs: list[dict], overlay: str) -> list[str]:
    p: list[str] = []
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    cms, secrets = by_kind.get("ConfigMap", {}), by_kind.get("Secret", {})
    workloads = [o for o in objs if o["kind"] in WORKLOAD_KINDS]
    for w in workloads:
        spec = pod_spec(w) or {}
        for v in spec.get("volumes") or []:
            if "configMap" in v and v["configMap"].get("name") not in cms and not v["configMap"].get("optional"):
                p.append(f"volume {v['name']}: ConfigMap {v['configMap'].get('name')} is not rendered")
            if "secret" in v:
                sn = v["secret"].get("secretName")
                if sn not in secrets and sn not in EXTERNAL_SECRETS and not v["secret"].get("optional"):
                    p.append(f"volume {v['name']}: Secret {sn} is neither rendered nor an expected external Secret")
        for c in spec.get("containers") or []:
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    sn = ref.get("name")
                    if sn in secrets:
                        data = {**(secrets[sn].get("data") or {}), **(secrets[sn].get("stringData") or {})}
                        if ref.get("key") not in data and not ref.get("optional"):
                            p.append(f"env {e['name']}: Secret {sn} has no key {ref.get('key')}")
                    elif sn not in EXTERNAL_SECRETS:
                        p.append(f"env {e['name']}: Secret {sn} is neither rendered nor an expected external Secret")
                if e.get("name", "").startswith("WAYBILL_") and not e["name"].startswith("WAYBILL_KAFKA__"):
                    p.append(f"env {e['name']}: every WAYBILL_* variable is a config key for `serve`; "
                             "only WAYBILL_KAFKA__* is expected here")
        if w["kind"] == "StatefulSet":
            svc = by_kind.get("Service", {}).get(w["spec"].get("serviceName"))
            if svc is None or (svc.get("spec") or {}).get("clusterIP") != "None":
                p.append(f"StatefulSet {w['metadata']['name']}: serviceName must name a rendered headless Service")

    def selects(sel: dict, labels: dict) -> bool:
        return bool(sel) and all(labels.get(k) == v for k, v in sel.items())

    for name, svc in by_kind.get("Service", {}).items():
        sel = (svc.get("spec") or {}).get("selector") or {}
        targets = [w for w in workloads if selects(sel, pod_labels(w))]
        if not targets:
            p.append(f"Service {name} selects no pod")
        for port in (svc.get("spec") or {}).get("ports") or []:
            tp = port.get("targetPort")
            for w in targets:
                names = {pt.get("name") for c in (pod_spec(w) or {}).get("containers") or [] for pt in c.get("ports") or []}
                nums = {pt.get("containerPort") for c in (pod_spec(w) or {}).get("containers") or [] for pt in c.get("ports") or []}
                if (isinstance(tp, str) and tp not in names) or (isinstance(tp, int) and tp not in nums) or \
                        (tp is None and port.get("port") not in nums):
                    p.append(f"Service {name} port {port.get('name')}: target {tp} is not a port of {w['metadata']['name']}")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for name, o in by_kind.get(kind, {}).items():
            field = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            sel = ((o.get("spec") or {}).get(field) or {}).get("matchLabels") or {}
            if not any(selects(sel, pod_labels(w)) for w in workloads):
                p.append(f"{kind} {name} selects no pod")
    for name, np in by_kind.get("NetworkPolicy", {}).items():
        allowed = {pt.get("port") for r in (np.get("spec") or {}).get("ingress") or [] for pt in r.get("ports") or []}
        for w in workloads:
            ports = {pt.get("containerPort") for c in (pod_spec(w) or {}).get("containers") or [] for pt in c.get("ports") or []}
            if allowed != ports:
                p.append(f"NetworkPolicy {name} admits ports {sorted(allowed, key=str)}, the pods listen on {sorted(ports)}")
    for name, sm in by_kind.get("ServiceMonitor", {}).items():
        sel = ((sm.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        hit = [s for s in by_kind.get("Service", {}).values() if selects(sel, (s.get("metadata") or {}).get("labels") or {})]
        if len(hit) != 1:
            p.append(f"ServiceMonitor {name} selects {len(hit)} Services (want exactly 1, or series are scraped twice)")
        for ep in (sm.get("spec") or {}).get("endpoints") or []:
            for s in hit:
                if ep.get("port") not in {pt.get("name") for pt in s["spec"].get("ports") or []}:
                    p.append(f"ServiceMonitor {name}: Service {s['metadata']['name']} has no port named {ep.get('port')}")
    return p


# ---------------------------------------------------------------- waybill.toml

def config_problems(root: str, toml_text: str, where: str, pod: dict | None, rep: Report,
                    cms: dict, secrets: dict, allow_pending: bool) -> list[str]:
    p: list[str] = []
    try:
        cfg = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as e:
        return [f"waybill.toml does not parse: {e}"]
    structs = rust_structs(os.path.join(root, "crates/server/src/config.rs"),
                           os.path.join(root, "crates/control/src/config.rs"))
    top = dict(structs["Config"])
    for k, v in cfg.items():
        if k not in top:
            if k in PENDING_SECTIONS and allow_pending:
                rep.warn(f"{where}: [{k}]", f"not in crates/server/src/config.rs yet ({PENDING_SECTIONS[k]}); "
                         "`serve` refuses unknown keys, so this config needs that change to land")
                continue
            p.append(f"unknown key `{k}` (crates/server/src/config.rs denies unknown fields)")
            continue
        ty = top[k].split("::")[-1].split("<")[0]
        if isinstance(v, dict) and ty in structs:
            fields = dict(structs[ty])
            for sk in v:
                if sk not in fields:
                    p.append(f"unknown key `{k}.{sk}` ({ty} denies unknown fields)")
    if pod is None:
        return p
    c = (pod.get("containers") or [{}])[0]
    ports = {pt.get("name"): pt.get("containerPort") for pt in c.get("ports") or []}
    for section, port_name in (("ingest", "ingest"), ("control", "grpc-control"), ("registry", "registry"), ("metrics", "metrics")):
        listen = (cfg.get(section) or {}).get("listen")
        if listen is None:
            continue
        m = re.fullmatch(r"(.+):(\d+)", listen)
        if not m or int(m.group(2)) != ports.get(port_name):
            p.append(f"{section}.listen {listen!r} is not on the container port {port_name} ({ports.get(port_name)})")
        elif m.group(1) in ("127.0.0.1", "localhost", "[::1]"):
            p.append(f"{section}.listen {listen!r} is loopback: unreachable from the Service and probes")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    if cfg.get("data_dir") not in mounts or mounts[cfg["data_dir"]].get("readOnly"):
        p.append(f"data_dir {cfg.get('data_dir')!r} is not a writable volume mount")

    def file_source(path: str) -> tuple[str, str, dict] | None:
        d, f = os.path.split(path)
        m = mounts.get(d)
        if m is None or m.get("subPath"):
            return None
        v = vols.get(m["name"]) or {}
        if "configMap" in v:
            return "ConfigMap", f, {"name": v["configMap"]["name"]}
        if "secret" in v:
            return "Secret", f, {"name": v["secret"]["secretName"], "optional": v["secret"].get("optional")}
        return None

    files = [("catalog", cfg.get("catalog"))]
    files += [(f"control.{k}", (cfg.get("control") or {}).get(k)) for k in ("tokens_file", "tls_cert", "tls_key", "client_ca")]
    files += [("kafka.ssl.ca.location", ((cfg.get("kafka") or {}).get("ssl") or {}).get("ca", {}).get("location")
               if isinstance(((cfg.get("kafka") or {}).get("ssl") or {}).get("ca"), dict) else None)]
    for k, path in files:
        if not path:
            continue
        src = file_source(path)
        if src is None:
            p.append(f"{k} = {path!r} is not in a directory mounted from a ConfigMap or Secret "
                     "(files that rotate must not be subPath mounts)")
            continue
        kind, fname, ref = src
        objs = cms if kind == "ConfigMap" else secrets
        obj = objs.get(ref["name"])
        if obj is None:
            if kind == "Secret" and ref["name"] in EXTERNAL_SECRETS:
                continue
            p.append(f"{k}: {kind} {ref['name']} is not rendered")
            continue
        data = {**(obj.get("data") or {}), **(obj.get("stringData") or {})}
        if fname not in data:
            p.append(f"{k}: {kind} {ref['name']} has no key {fname}")
        elif k == "catalog":
            p += catalog_problems(root, data[fname])
        elif k == "control.tokens_file":
            try:
                t = tomllib.loads(data[fname])
                bad = set(t) - {"tokens", "clients"}
                if bad:
                    p.append(f"tokens file has unknown sections {sorted(bad)}")
            except tomllib.TOMLDecodeError as e:
                p.append(f"tokens file does not parse: {e}")
    return p


def catalog_problems(root: str, text: str) -> list[str]:
    try:
        cat = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return [f"catalog.toml does not parse: {e}"]
    structs = rust_structs(os.path.join(root, "crates/saga/src/catalog.rs"))
    p = [f"catalog.toml: unknown key `{k}`" for k in cat if k not in dict(structs.get("Catalog", []))]
    pf = dict(structs.get("Product", []))
    for sku, prod in (cat.get("products") or {}).items():
        p += [f"catalog.toml: products.{sku}: unknown key `{k}`" for k in prod if k not in pf]
        p += [f"catalog.toml: products.{sku}: missing `{k}`" for k in ("sku", "uom") if k not in prod]
    return p


# ---------------------------------------------------------------- PromQL

def promql_problems(expr: str, metrics: dict, used: set[str], emitted: set[str] | None = None) -> list[str]:
    import promql_parser
    text = expr.replace("$__rate_interval", "5m").replace("${__rate_interval}", "5m") \
               .replace("$__interval", "1m").replace("$__range", "1h")
    try:
        ast = promql_parser.parse(text)
    except Exception as e:  # the parser raises ValueError with the reason
        return [f"does not parse ({e}): {expr.strip()}"]
    p: list[str] = []

    def resolve(name: str) -> tuple[str | None, set[str]]:
        if name in metrics:
            kind, labels = metrics[name]
            if kind == "Histogram":
                p.append(f"histogram {name} used without _bucket/_sum/_count")
            return name, labels
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)] if name.endswith(suffix) else None
            if base in metrics and metrics[base][0] == "Histogram":
                return base, metrics[base][1] | ({"le"} if suffix == "_bucket" else set())
        if name in EXTERNAL_METRICS:
            return name, set()
        p.append(f"metric {name} is not in crates/telemetry/src/metrics.rs")
        return None, set()

    def selectors(node) -> list:
        found = []
        promql_parser.walk(node, lambda n: found.append(n) if type(n).__name__ == "VectorSelector" else None)
        return found

    def labels_of(node) -> set[str] | None:
        out: set[str] = set()
        for s in selectors(node):
            name = s.name or next((m.value for m in s.matchers.matchers if m.name == "__name__"), None)
            if name is None or name in EXTERNAL_METRICS:
                return None  # cannot tell
            base, labels = resolve(name)
            out |= labels
        return out

    for s in selectors(ast):
        name = s.name or next((m.value for m in s.matchers.matchers if m.name == "__name__"), None)
        if name is None:
            p.append("selector without a metric name")
            continue
        base, labels = resolve(name)
        if base is None:
            continue
        used.add(base)
        if base in EXTERNAL_METRICS:
            continue
        if emitted is not None and base not in emitted:
            p.append(f"{base} is declared in metrics.rs but nothing in crates/ emits it "
                     "(no counter!/gauge!/histogram! names it): the series never exists")
        for m in s.matchers.matchers:
            if m.name != "__name__" and m.name not in labels | TARGET_LABELS:
                p.append(f"{name} has no label {m.name!r} (labels: {sorted(labels)})")

    def agg(n):
        if type(n).__name__ == "AggregateExpr" and n.modifier is not None and str(n.modifier.type).endswith("By"):
            have = labels_of(n.expr)
            if have is not None:
                for lab in n.modifier.labels:
                    if lab not in have | TARGET_LABELS:
                        p.append(f"`by ({lab})` but the aggregated metrics have no label {lab!r}")
    promql_parser.walk(ast, agg)
    return sorted(set(p))


def anchors(markdown: str) -> set[str]:
    out = set()
    for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.M):
        a = re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        out.add(a)
    return out


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--renderer", default="auto", choices=["auto", "kustomize", "kubectl", "python"])
    ap.add_argument("--k8s-version", default=os.environ.get("WAYBILL_K8S_VERSION", K8S_VERSION_DEFAULT))
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    rep = Report()
    metrics = load_metrics(root)
    emitted = set(load_emitted(root)) & set(metrics)
    crd_schemas = load_crd_schemas(root)
    print(f"deploy-check: {len(metrics)} metrics in crates/telemetry/src/metrics.rs, {len(emitted)} of them emitted "
          f"in crates/, Kubernetes schemas {args.k8s_version}")

    real = None
    if args.renderer in ("auto", "kustomize") and shutil.which("kustomize"):
        real = "kustomize"
    elif args.renderer in ("auto", "kubectl") and shutil.which("kubectl"):
        real = "kubectl"
    elif args.renderer in ("kustomize", "kubectl"):
        rep.fail("renderer", f"{args.renderer} is not on PATH")
        return 1
    if real:
        ver = subprocess.run(["kustomize", "version"] if real == "kustomize" else ["kubectl", "version", "--client"],
                             capture_output=True, text=True).stdout.strip().replace("\n", ", ")
        rep.note(f"rendering with {real} ({ver}); deploy/tools/render.py is cross-checked against it")
    else:
        why = "as asked" if args.renderer == "python" else "no kustomize or kubectl on PATH"
        rep.note(f"{why}: rendering with deploy/tools/render.py (the kustomize subset deploy/ uses)")

    overlays = sorted(d for d in os.listdir(os.path.join(root, "deploy/overlays"))
                      if os.path.isdir(os.path.join(root, "deploy/overlays", d)))
    used_dashboard: set[str] = set()
    for ov in overlays:
        print(f"overlay {ov}:")
        try:
            objs = render(root, ov, real or "python")
        except RuntimeError as e:
            rep.fail(f"{ov}: render", str(e))
            continue
        rep.ok(f"{ov}: rendered {len(objs)} objects")
        if real:
            try:
                mine = {key(o): o for o in render(root, ov, "python")}
                theirs = {key(o): o for o in objs}
                diff = sorted(set(mine) ^ set(theirs)) + sorted(k for k in set(mine) & set(theirs) if mine[k] != theirs[k])
                rep.check(f"{ov}: render.py gives the same objects as {real}",
                          [f"differs on {d}" for d in diff])
            except RuntimeError as e:
                rep.fail(f"{ov}: render.py", str(e))
        seen = set()
        for o in objs:
            k = key(o)
            probs = validate_object(o, args.k8s_version, crd_schemas)
            if k in seen:
                probs.append("defined twice")
            seen.add(k)
            rep.check(f"{ov}: {k[0]}/{k[1]} schema", probs)
            if o.get("kind") in WORKLOAD_KINDS:
                rep.check(f"{ov}: {k[0]}/{k[1]} security and resources policy", policy_problems(o, long_running=True))
        rep.check(f"{ov}: wiring (volumes, Secrets, selectors, ports)", wiring_problems(objs, ov))
        cms = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
        secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
        sts = next((o for o in objs if o["kind"] == "StatefulSet"), None)
        cm = cms.get("waybill-config")
        if cm is None or "waybill.toml" not in (cm.get("data") or {}):
            rep.fail(f"{ov}: waybill.toml", "ConfigMap waybill-config with key waybill.toml is not rendered")
        else:
            rep.check(f"{ov}: waybill.toml against config.rs and the pod spec",
                      config_problems(root, cm["data"]["waybill.toml"], ov, pod_spec(sts) if sts else None, rep,
                                      cms, secrets, allow_pending=True))

    print("other manifests:")
    extra = [os.path.join(root, "deploy/alerts.yaml")]
    mdir = os.path.join(root, "deploy/maintenance")
    if os.path.isdir(mdir):
        extra += [os.path.join(mdir, n) for n in sorted(os.listdir(mdir)) if n.endswith((".yaml", ".yml"))]
    rules = []
    for path in extra:
        rel = os.path.relpath(path, root)
        try:
            docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            rep.fail(rel, str(e))
            continue
        for o in docs:
            rep.check(f"{rel}: {key(o)[0]}/{key(o)[1]} schema", validate_object(o, args.k8s_version, crd_schemas))
            if o.get("kind") in WORKLOAD_KINDS:
                rep.check(f"{rel}: {key(o)[0]}/{key(o)[1]} security and resources policy",
                          policy_problems(o, long_running=False))
            if o.get("kind") == "PrometheusRule":
                rules += [r for g in (o.get("spec") or {}).get("groups") or [] for r in g.get("rules") or []]

    print("alerts (deploy/alerts.yaml) and runbook (docs/operations.md):")
    ops_path = os.path.join(root, "docs/operations.md")
    ops = open(ops_path, encoding="utf-8").read() if os.path.exists(ops_path) else ""
    if not ops:
        rep.fail("docs/operations.md", "missing or empty")
    ops_anchors = anchors(ops)
    names = [r.get("alert") for r in rules if r.get("alert")]
    if not names:
        rep.fail("alerts", "no alerting rule found in deploy/alerts.yaml")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        rep.fail("alerts", f"defined twice: {dup}")
    used_alerts: set[str] = set()
    for r in rules:
        name = r.get("alert") or r.get("record")
        probs = promql_problems(str(r.get("expr", "")), metrics, used_alerts, emitted)
        if r.get("alert"):
            if (r.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                probs.append("labels.severity must be critical, warning or info")
            ann = r.get("annotations") or {}
            for a in ("summary", "description", "runbook_url"):
                if not ann.get(a):
                    probs.append(f"no annotations.{a}")
            frag = (ann.get("runbook_url") or "").partition("#")[2]
            if not (ann.get("runbook_url") or "").split("#")[0].endswith("docs/operations.md") or frag not in ops_anchors:
                probs.append(f"runbook_url must point at a heading of docs/operations.md (#{frag} is not one)")
        rep.check(f"alert {name}", probs)
    mentioned = set(re.findall(r"\bWaybill[A-Z][A-Za-z]+\b", ops))
    rep.check("every alert named in docs/operations.md exists in deploy/alerts.yaml",
              [f"{n} is not an alert" for n in sorted(mentioned - set(names))])
    crate_names = {"waybill_" + d.replace("-", "_") for d in os.listdir(os.path.join(root, "crates"))}
    doc_metrics = set(re.findall(r"\bwaybill_[a-z0-9_]+\b", ops)) - crate_names
    bad = []
    for m in sorted(doc_metrics):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if m not in metrics and not (base in metrics and metrics[base][0] == "Histogram"):
            bad.append(f"{m} is not in metrics.rs")
    rep.check(f"the {len(doc_metrics)} metric names in docs/operations.md exist", bad)

    print("dashboard (deploy/grafana/waybill.json):")
    dpath = os.path.join(root, "deploy/grafana/waybill.json")
    try:
        dash = json.load(open(dpath, encoding="utf-8"))
        rep.ok("parses as JSON")
    except (OSError, json.JSONDecodeError) as e:
        rep.fail("deploy/grafana/waybill.json", f"does not parse: {e}")
        dash = None
    if dash is not None:
        panels = []
        for pnl in dash.get("panels") or []:
            panels.append(pnl)
            panels += pnl.get("panels") or []
        ids = [pnl.get("id") for pnl in panels]
        structure = []
        if len(ids) != len(set(ids)) or None in ids:
            structure.append("panel ids must be present and unique")
        if not dash.get("uid") or not dash.get("title"):
            structure.append("uid and title are required")
        variables = {v.get("name") for v in (dash.get("templating") or {}).get("list") or []}
        for pnl in panels:
            if pnl.get("type") == "row":
                continue
            if "gridPos" not in pnl:
                structure.append(f"panel {pnl.get('title')!r} has no gridPos")
            if not pnl.get("targets"):
                structure.append(f"panel {pnl.get('title')!r} has no query")
        for ref in set(re.findall(r"\$\{?(\w+)", json.dumps(dash))) - {"__rate_interval", "__interval", "__range"}:
            if ref not in variables:
                structure.append(f"uses ${ref}, which is not a dashboard variable")
        rep.check("panels, ids and variables", structure)
        for pnl in panels:
            for t in pnl.get("targets") or []:
                rep.check(f"panel {pnl.get('title')!r} {t.get('refId')}",
                          promql_problems(t.get("expr", ""), metrics, used_dashboard, emitted))
        for v in (dash.get("templating") or {}).get("list") or []:
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q or "")
            if m:
                rep.check(f"variable {v['name']}", promql_problems(m.group(1), metrics, set()))
        missing = sorted(emitted - used_dashboard)
        rep.check(f"every emitted metric is on the dashboard ({len(used_dashboard & emitted)}/{len(emitted)})",
                  [f"{m} has no panel" for m in missing])
        idle = sorted(set(metrics) - emitted)
        if idle:
            rep.note("declared in metrics.rs but emitted nowhere yet (no panel, no alert may use them): "
                     + ", ".join(idle))

    print("container image (deploy/Dockerfile, deploy/waybill.toml):")
    dtext = open(os.path.join(root, "deploy/Dockerfile"), encoding="utf-8").read()
    last_stage = dtext[dtext.rfind("\nFROM "):]
    probs = []
    exposed = {int(x) for line in re.findall(r"^EXPOSE\s+(.+)$", last_stage, re.M) for x in re.findall(r"(\d+)", line)}
    if exposed != {8420, 8421, 8422, 8423, 9464}:
        probs.append(f"EXPOSE {sorted(exposed)}, want 8420 8421 8422 8423 9464")
    if not re.search(r"^USER\s+10001(:10001)?\s*$", last_stage, re.M):
        probs.append("final stage must run as USER 10001")
    if not re.search(r'^ENTRYPOINT\s+\["/usr/local/bin/waybill",\s*"serve",\s*"--config",\s*"/etc/waybill/waybill.toml"\]', last_stage, re.M):
        probs.append("ENTRYPOINT must be waybill serve --config /etc/waybill/waybill.toml (exec form)")
    if not re.search(r'^VOLUME\s+\["?/data"?\]?', last_stage, re.M):
        probs.append("VOLUME /data missing")
    if not re.search(r"^STOPSIGNAL\s+SIGINT", last_stage, re.M):
        probs.append("STOPSIGNAL SIGINT missing (`serve` stops cleanly on SIGINT only)")
    if "--locked" not in dtext or "--bin waybill" not in dtext:
        probs.append("cargo build must use --locked --bin waybill")
    rep.check("Dockerfile ports, user, volume, entrypoint, stop signal", probs)
    img_cfg = os.path.join(root, "deploy/waybill.toml")
    rep.check("deploy/waybill.toml (the image's default config) against config.rs",
              config_problems(root, open(img_cfg, encoding="utf-8").read(), "image", None, rep, {}, {}, allow_pending=False))

    ext = sorted(set(EXTERNAL_METRICS) & used_alerts)
    if ext:
        rep.note("metrics from outside Waybill used by alerts: " + ", ".join(f"{m} ({EXTERNAL_METRICS[m]})" for m in ext))
    rep.note("CRDs (ServiceMonitor, PrometheusRule) are checked against the subsets in deploy/schemas/")
    print(f"deploy-check: {rep.passed} passed, {rep.failed} failed" + (f" ({rep.warnings} warnings)" if rep.warnings else ""))
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
