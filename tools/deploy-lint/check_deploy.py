#!/usr/bin/python3
"""Cross-reference checks of docker-compose.yml and deploy/k8s/ that no schema can do.

Run by tools/lint-deploy.sh after the schema check; needs only Debian's python3-yaml.

Kubernetes (deploy/k8s):
  - apiVersion/kind pairs known; metadata.name set; no metadata.namespace (namespace-agnostic);
    no duplicate kind/name; kustomization.yaml lists every manifest (or it is a known optional
    one) and only existing files; every container image is in its images: list and back.
  - Deployments/Jobs: selector matches the template labels, selectors of different workloads
    do not overlap; every container has cpu+memory requests and limits, the hardened
    securityContext (runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, drop ALL,
    seccomp RuntimeDefault) and a writable /tmp; Deployments have startup, liveness and
    readiness probes whose port exists; env/envFrom references point at existing
    ConfigMaps/Secrets and keys; every variable set is one of common/config.c's config_table;
    volume mounts and service accounts exist.
  - Services select a Deployment and target an existing container port; the HPA targets an
    existing Deployment whose replicas lie within min..max and whose containers request what
    the HPA measures; a PDB selects a Deployment and leaves room for one eviction;
    NetworkPolicies select a workload and open only container ports; ServiceMonitors select a
    Service and name its ports; the PrometheusRule's groups equal
    deploy/prometheus/profile-alerts.yaml.
  - This service's own rules: HTTP_PORT / RELAY_METRICS_PORT equal the container ports,
    HTTP_THREADS equals the CPU limit, terminationGracePeriodSeconds covers preStop sleep +
    SHUTDOWN_DRAIN_SECONDS + 10 s of in-flight grace, and PG_POOL_MAX x (HPA max + surge) + relay
    + job connections fit the PostgreSQL max_connections named in the API's annotations.
Compose (docker-compose.yml): services, depends_on conditions and targets are consistent, every
  environment variable of api/relay/migrate is a known config variable, required ones are set,
  and development secrets are marked as such.

Usage: check_deploy.py [--repo DIR]   Exit status 0 when everything holds, 1 otherwise.
"""

import argparse
import glob
import os
import re
import sys

import yaml

KNOWN_KINDS = {
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# Manifests that kustomization.yaml may leave out on purpose (need CRDs).
OPTIONAL_MANIFESTS = {"servicemonitor.yaml", "prometheusrule.yaml"}
API_NAME = "profile-api"
RELAY_NAME = "profile-relay"
IN_FLIGHT_GRACE_SECONDS = 10


class Checker:
    def __init__(self):
        self.problems = []
        self.checks = 0

    def ok(self, cond, msg):
        self.checks += 1
        if not cond:
            self.problems.append(msg)
        return cond


def load_config_vars(repo):
    """Names in common/config.c's config_table, and those required by each program."""
    path = os.path.join(repo, "common", "config.c")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    m = re.search(r"config_table\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
    if not m:
        raise SystemExit("check_deploy: cannot find config_table in common/config.c")
    names = re.findall(r'\.name\s*=\s*"([A-Z0-9_]+)"', m.group(1))
    return set(names)


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def matches(selector, labels):
    """True when a matchLabels selector (dict) selects the label set."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def cpu_cores(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def check_k8s(c, repo, config_vars):
    kdir = os.path.join(repo, "deploy", "k8s")
    files = sorted(glob.glob(os.path.join(kdir, "*.yaml")))
    objs = []  # (file, obj)
    kust = None
    for path in files:
        base = os.path.basename(path)
        for obj in load_docs(path):
            if base == "kustomization.yaml":
                kust = obj
                continue
            objs.append((base, obj))

    # -- every object
    seen = set()
    for base, o in objs:
        kind, api = o.get("kind"), o.get("apiVersion")
        name = (o.get("metadata") or {}).get("name")
        where = f"{base}: {kind}/{name}"
        c.ok((api, kind) in KNOWN_KINDS, f"{where}: unknown apiVersion/kind {api} {kind}")
        c.ok(bool(name), f"{base}: {kind} without metadata.name")
        c.ok("namespace" not in (o.get("metadata") or {}),
             f"{where}: metadata.namespace set (manifests must be namespace-agnostic)")
        c.ok((kind, name) not in seen, f"{where}: defined twice")
        seen.add((kind, name))

    def of_kind(kind):
        return [(b, o) for b, o in objs if o.get("kind") == kind]

    by_name = {(o["kind"], o["metadata"]["name"]): o for _, o in objs
               if o.get("kind") and (o.get("metadata") or {}).get("name")}
    configmaps = {n: o.get("data") or {} for (k, n), o in by_name.items() if k == "ConfigMap"}
    secrets = {n: {**(o.get("data") or {}), **(o.get("stringData") or {})}
               for (k, n), o in by_name.items() if k == "Secret"}
    accounts = {n for (k, n) in by_name if k == "ServiceAccount"}

    # -- kustomization
    if c.ok(kust is not None, "deploy/k8s/kustomization.yaml missing"):
        listed = kust.get("resources") or []
        for r in listed:
            c.ok(os.path.isfile(os.path.join(kdir, r)), f"kustomization.yaml: resource {r} does not exist")
        for path in files:
            base = os.path.basename(path)
            if base != "kustomization.yaml" and base not in OPTIONAL_MANIFESTS:
                c.ok(base in listed, f"kustomization.yaml: {base} is not listed in resources")
        kimages = {i.get("name") for i in kust.get("images") or []}
    else:
        kimages = set()

    workloads = []  # (base, obj, pod_template)
    for base, o in of_kind("Deployment") + of_kind("Job"):
        workloads.append((base, o, (o.get("spec") or {}).get("template") or {}))
    used_images = set()
    values = {}  # (workload name, VAR) -> literal value (env or configmap)

    for base, o, tpl in workloads:
        kind, name = o["kind"], o["metadata"]["name"]
        where = f"{base}: {kind}/{name}"
        spec = o.get("spec") or {}
        tlabels = (tpl.get("metadata") or {}).get("labels") or {}
        pod = tpl.get("spec") or {}
        if kind == "Deployment":
            sel = (spec.get("selector") or {}).get("matchLabels") or {}
            c.ok(matches(sel, tlabels), f"{where}: selector {sel} does not match template labels {tlabels}")
            for b2, o2, t2 in workloads:
                if o2 is o:
                    continue
                l2 = (t2.get("metadata") or {}).get("labels") or {}
                c.ok(not matches(sel, l2),
                     f"{where}: selector also selects the pods of {o2['kind']}/{o2['metadata']['name']}")
        else:
            c.ok(pod.get("restartPolicy") in ("Never", "OnFailure"),
                 f"{where}: restartPolicy must be Never or OnFailure")
        sa = pod.get("serviceAccountName")
        if sa:
            c.ok(sa in accounts, f"{where}: serviceAccountName {sa} is not defined")
        c.ok(pod.get("automountServiceAccountToken") is False,
             f"{where}: automountServiceAccountToken should be false (no Kubernetes API use)")
        psc = pod.get("securityContext") or {}
        vols = {v.get("name"): v for v in pod.get("volumes") or []}
        containers = pod.get("containers") or []
        c.ok(bool(containers), f"{where}: no containers")
        for ct in containers:
            cw = f"{where} container {ct.get('name')}"
            used_images.add(ct.get("image"))
            c.ok(ct.get("image") in kimages, f"{cw}: image {ct.get('image')} not in kustomization images")
            res = ct.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    c.ok(r in (res.get(part) or {}), f"{cw}: resources.{part}.{r} not set")
            sc = ct.get("securityContext") or {}
            c.ok(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{cw}: runAsNonRoot not true")
            c.ok(sc.get("readOnlyRootFilesystem") is True, f"{cw}: readOnlyRootFilesystem not true")
            c.ok(sc.get("allowPrivilegeEscalation") is False, f"{cw}: allowPrivilegeEscalation not false")
            c.ok("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{cw}: capabilities.drop lacks ALL")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            c.ok(seccomp == "RuntimeDefault", f"{cw}: seccompProfile RuntimeDefault not set")
            mounts = {m.get("mountPath"): m for m in ct.get("volumeMounts") or []}
            for m in mounts.values():
                c.ok(m.get("name") in vols, f"{cw}: volumeMount {m.get('name')} has no volume")
            c.ok("/tmp" in mounts, f"{cw}: read-only root needs a writable /tmp volume")
            ports = {p.get("name"): p.get("containerPort") for p in ct.get("ports") or []}
            port_numbers = set(ports.values())
            if kind == "Deployment":
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    pr = ct.get(probe)
                    if not c.ok(pr is not None, f"{cw}: {probe} missing"):
                        continue
                    hg = pr.get("httpGet")
                    if c.ok(hg is not None, f"{cw}: {probe} is not an httpGet probe"):
                        port = hg.get("port")
                        c.ok(port in ports or port in port_numbers,
                             f"{cw}: {probe} port {port} is not a container port")
                c.ok((ct.get("livenessProbe") or {}).get("httpGet", {}).get("path") == "/health/live",
                     f"{cw}: livenessProbe must GET /health/live")
                c.ok((ct.get("readinessProbe") or {}).get("httpGet", {}).get("path") == "/health/ready",
                     f"{cw}: readinessProbe must GET /health/ready")
            # environment
            env_names = []
            for ef in ct.get("envFrom") or []:
                if "configMapRef" in ef:
                    n = ef["configMapRef"].get("name")
                    if c.ok(n in configmaps, f"{cw}: envFrom ConfigMap {n} does not exist"):
                        for k, v in configmaps[n].items():
                            env_names.append((k, f"ConfigMap {n}"))
                            values[(name, k)] = str(v)
                if "secretRef" in ef:
                    n = ef["secretRef"].get("name")
                    if c.ok(n in secrets, f"{cw}: envFrom Secret {n} does not exist"):
                        env_names += [(k, f"Secret {n}") for k in secrets[n]]
            for e in ct.get("env") or []:
                env_names.append((e.get("name"), "env"))
                if "value" in e:
                    values[(name, e["name"])] = str(e["value"])
                vf = e.get("valueFrom") or {}
                if "secretKeyRef" in vf:
                    ref = vf["secretKeyRef"]
                    c.ok(ref.get("name") in secrets and ref.get("key") in secrets[ref.get("name")],
                         f"{cw}: env {e.get('name')}: Secret {ref.get('name')} key {ref.get('key')} does not exist")
                if "configMapKeyRef" in vf:
                    ref = vf["configMapKeyRef"]
                    c.ok(ref.get("name") in configmaps and ref.get("key") in configmaps[ref.get("name")],
                         f"{cw}: env {e.get('name')}: ConfigMap {ref.get('name')} key {ref.get('key')} does not exist")
            for var, src in env_names:
                c.ok(var in config_vars, f"{cw}: {var} (from {src}) is not a variable of common/config.c")
            c.ok("DATABASE_URL" in {v for v, _ in env_names}, f"{cw}: DATABASE_URL not set")
    for img in kimages - used_images:
        c.problems.append(f"kustomization.yaml: image {img} is used by no container")

    deployments = {o["metadata"]["name"]: (o, t) for _, o, t in workloads if o["kind"] == "Deployment"}

    def pod_labels(tpl):
        return (tpl.get("metadata") or {}).get("labels") or {}

    def container_ports(tpl):
        out = {}
        for ct in (tpl.get("spec") or {}).get("containers") or []:
            for p in ct.get("ports") or []:
                out[p.get("name")] = p.get("containerPort")
        return out

    # -- Services
    services = {}
    for base, o in of_kind("Service"):
        name = o["metadata"]["name"]
        sel = (o.get("spec") or {}).get("selector") or {}
        targets = [(n, t) for n, (_, t) in deployments.items() if matches(sel, pod_labels(t))]
        if c.ok(bool(targets), f"{base}: Service/{name} selects no Deployment"):
            for p in (o.get("spec") or {}).get("ports") or []:
                tp = p.get("targetPort", p.get("port"))
                for dn, t in targets:
                    cp = container_ports(t)
                    c.ok(tp in cp or tp in cp.values(),
                         f"{base}: Service/{name} targetPort {tp} is not a port of Deployment/{dn}")
        services[name] = o

    # -- HPA
    hpa_max = {}
    for base, o in of_kind("HorizontalPodAutoscaler"):
        spec = o.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        name = o["metadata"]["name"]
        if c.ok(ref.get("kind") == "Deployment" and ref.get("name") in deployments,
                f"{base}: HPA/{name} targets {ref.get('kind')}/{ref.get('name')}, which does not exist"):
            d, t = deployments[ref["name"]]
            lo, hi = spec.get("minReplicas", 1), spec.get("maxReplicas", 0)
            c.ok(lo <= d["spec"].get("replicas", 1) <= hi,
                 f"{base}: HPA/{name}: Deployment replicas outside {lo}..{hi}")
            hpa_max[ref["name"]] = hi
            for m in spec.get("metrics") or []:
                r = (m.get("resource") or {}).get("name")
                if r:
                    for ct in (t.get("spec") or {}).get("containers") or []:
                        c.ok(r in ((ct.get("resources") or {}).get("requests") or {}),
                             f"{base}: HPA/{name} measures {r} but container {ct.get('name')} requests none")

    # -- PDB
    for base, o in of_kind("PodDisruptionBudget"):
        name = o["metadata"]["name"]
        sel = ((o.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        targets = [d for d, t in deployments.values() if matches(sel, pod_labels(t))]
        if c.ok(len(targets) == 1, f"{base}: PDB/{name} must select exactly one Deployment"):
            ma = (o.get("spec") or {}).get("minAvailable")
            if isinstance(ma, int):
                c.ok(ma < targets[0]["spec"].get("replicas", 1),
                     f"{base}: PDB/{name} minAvailable {ma} blocks every eviction (replicas too low)")

    # -- NetworkPolicy
    all_pods = [(o, t) for _, o, t in workloads]
    for base, o in of_kind("NetworkPolicy"):
        name = o["metadata"]["name"]
        sel = ((o.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}
        targets = [t for _, t in all_pods if matches(sel, pod_labels(t))]
        if c.ok(bool(targets), f"{base}: NetworkPolicy/{name} selects no workload"):
            for rule in (o.get("spec") or {}).get("ingress") or []:
                for p in rule.get("ports") or []:
                    port = p.get("port")
                    c.ok(any(port in container_ports(t).values() or port in container_ports(t) for t in targets),
                         f"{base}: NetworkPolicy/{name} opens port {port} that no selected container has")

    # -- ServiceMonitor
    for base, o in of_kind("ServiceMonitor"):
        name = o["metadata"]["name"]
        sel = ((o.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        svcs = [s for s in services.values() if matches(sel, (s.get("metadata") or {}).get("labels") or {})]
        if c.ok(bool(svcs), f"{base}: ServiceMonitor/{name} selects no Service"):
            for ep in (o.get("spec") or {}).get("endpoints") or []:
                c.ok(any(ep.get("port") in {p.get("name") for p in s["spec"].get("ports") or []} for s in svcs),
                     f"{base}: ServiceMonitor/{name} port {ep.get('port')} is not a port of the selected Services")

    # -- PrometheusRule mirrors deploy/prometheus/profile-alerts.yaml
    rules_file = os.path.join(repo, "deploy", "prometheus", "profile-alerts.yaml")
    for base, o in of_kind("PrometheusRule"):
        if c.ok(os.path.isfile(rules_file), f"{base}: {rules_file} missing"):
            with open(rules_file, encoding="utf-8") as f:
                groups = (yaml.safe_load(f) or {}).get("groups")
            c.ok((o.get("spec") or {}).get("groups") == groups,
                 f"{base}: spec.groups differ from deploy/prometheus/profile-alerts.yaml")

    # -- this service's own rules
    if c.ok(API_NAME in deployments, f"Deployment/{API_NAME} missing"):
        d, t = deployments[API_NAME]
        ct = t["spec"]["containers"][0]
        ports = {p.get("containerPort") for p in ct.get("ports") or []}
        c.ok(int(values.get((API_NAME, "HTTP_PORT"), "8080")) in ports,
             f"{API_NAME}: HTTP_PORT {values.get((API_NAME, 'HTTP_PORT'), '8080')} is not the container port")
        limit = cpu_cores(ct["resources"]["limits"]["cpu"])
        threads = values.get((API_NAME, "HTTP_THREADS"))
        c.ok(threads is not None and int(threads) == int(limit) and limit == int(limit),
             f"{API_NAME}: HTTP_THREADS ({threads}) must be set and equal the CPU limit ({limit})")
        c.ok(d["spec"].get("replicas") == 3, f"{API_NAME}: replicas must be 3")
        ru = ((d["spec"].get("strategy") or {}).get("rollingUpdate") or {})
        c.ok(ru.get("maxUnavailable") == 0 and ru.get("maxSurge") == 1,
             f"{API_NAME}: rolling update must be maxSurge 1, maxUnavailable 0")
        pre = ((ct.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
        pre_s = int(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else 0
        c.ok(pre_s > 0, f"{API_NAME}: preStop sleep missing")
        drain = int(values.get((API_NAME, "SHUTDOWN_DRAIN_SECONDS"), "5"))
        grace = t["spec"].get("terminationGracePeriodSeconds", 30)
        need = pre_s + drain + IN_FLIGHT_GRACE_SECONDS
        c.ok(grace >= need, f"{API_NAME}: terminationGracePeriodSeconds {grace} < preStop {pre_s} + "
             f"drain {drain} + in-flight {IN_FLIGHT_GRACE_SECONDS}")
        ann = d["metadata"].get("annotations") or {}
        pool = int(values.get((API_NAME, "PG_POOL_MAX"), "30"))
        # OUTBOX_HINT (default on): one more connection per thread sends the relays' wake-up
        if values.get((API_NAME, "OUTBOX_HINT"), "1") != "0":
            pool += int(values.get((API_NAME, "HTTP_THREADS"), "1"))
        if c.ok("profile-service/pg-max-connections" in ann,
                f"{API_NAME}: annotation profile-service/pg-max-connections missing"):
            budget = int(ann["profile-service/pg-max-connections"]) - int(
                ann.get("profile-service/pg-reserved-connections", "0"))
            api_pods = hpa_max.get(API_NAME, d["spec"]["replicas"]) + int(ru.get("maxSurge", 1))
            total = api_pods * pool
            if RELAY_NAME in deployments:
                rd, _ = deployments[RELAY_NAME]
                rsurge = int(((rd["spec"].get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", 1))
                per = int((rd["metadata"].get("annotations") or {}).get("profile-service/pg-connections-per-pod", "4"))
                total += (rd["spec"].get("replicas", 1) + rsurge) * per
            total += len(of_kind("Job"))
            c.ok(total <= budget, f"{API_NAME}: PostgreSQL connections {total} (PG_POOL_MAX + hint {pool} x {api_pods} "
                 f"api pods + relay + jobs) exceed the budget {budget}")
            print(f"  postgres connection budget: {total} of {budget} at the HPA maximum")
    if c.ok(RELAY_NAME in deployments, f"Deployment/{RELAY_NAME} missing"):
        d, t = deployments[RELAY_NAME]
        ct = t["spec"]["containers"][0]
        ports = {p.get("containerPort") for p in ct.get("ports") or []}
        c.ok(int(values.get((RELAY_NAME, "RELAY_METRICS_PORT"), "9101")) in ports,
             f"{RELAY_NAME}: RELAY_METRICS_PORT is not the container port")
        c.ok(d["spec"].get("replicas") == 2, f"{RELAY_NAME}: replicas must be 2")
        c.ok((RELAY_NAME, "KAFKA_BOOTSTRAP_SERVERS") in values, f"{RELAY_NAME}: KAFKA_BOOTSTRAP_SERVERS not set")
    return len(objs)


def check_compose(c, repo, config_vars):
    path = os.path.join(repo, "docker-compose.yml")
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    doc = yaml.safe_load(raw)
    if not c.ok(isinstance(doc, dict) and isinstance(doc.get("services"), dict),
                "docker-compose.yml: no services mapping"):
        return 0
    allowed_top = {"services", "volumes", "networks", "configs", "secrets", "name"}
    for k in doc:
        c.ok(k in allowed_top or str(k).startswith("x-"), f"docker-compose.yml: unknown top-level key {k}")
    services = doc["services"]
    for want in ("postgres", "redis", "kafka", "migrate", "api", "relay"):
        c.ok(want in services, f"docker-compose.yml: service {want} missing")
    volumes = set((doc.get("volumes") or {}).keys())
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, svc in services.items():
        where = f"docker-compose.yml: service {name}"
        if not c.ok(isinstance(svc, dict), f"{where}: not a mapping"):
            continue
        c.ok("image" in svc or "build" in svc, f"{where}: neither image nor build")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            c.ok(dep in services, f"{where}: depends_on unknown service {dep}")
            cond = (spec or {}).get("condition", "service_started")
            c.ok(cond in conditions, f"{where}: depends_on {dep}: bad condition {cond}")
            if cond == "service_healthy":
                c.ok("healthcheck" in services.get(dep, {}) or "build" in services.get(dep, {}),
                     f"{where}: waits for {dep} to be healthy but {dep} has no healthcheck")
        for v in svc.get("volumes") or []:
            src = str(v).split(":", 1)[0]
            if not src.startswith((".", "/")):
                c.ok(src in volumes, f"{where}: named volume {src} not declared")
        build = svc.get("build")
        if isinstance(build, dict):
            df = os.path.join(repo, build.get("context", "."), build.get("dockerfile", "Dockerfile"))
            if c.ok(os.path.isfile(df), f"{where}: Dockerfile {df} missing"):
                with open(df, encoding="utf-8") as f:
                    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", f.read(), re.M | re.I)
                c.ok(build.get("target") in stages, f"{where}: build target {build.get('target')} not in {stages}")
        if name in ("api", "relay", "migrate"):
            env = svc.get("environment") or {}
            if isinstance(env, list):
                env = dict(e.split("=", 1) for e in env)
            for var in env:
                c.ok(var in config_vars, f"{where}: {var} is not a variable of common/config.c")
            c.ok("DATABASE_URL" in env, f"{where}: DATABASE_URL not set")
    for var in ("JWT_ISSUER", "JWT_AUDIENCE"):
        c.ok(var in (services.get("api", {}).get("environment") or {}), f"docker-compose.yml: api lacks {var}")
    c.ok("KAFKA_BOOTSTRAP_SERVERS" in (services.get("relay", {}).get("environment") or {}),
         "docker-compose.yml: relay lacks KAFKA_BOOTSTRAP_SERVERS")
    c.ok(services.get("api", {}).get("depends_on", {}).get("migrate", {}).get("condition")
         == "service_completed_successfully", "docker-compose.yml: api must wait for migrate to complete")
    # Development secrets must be visibly marked.
    for line_no, line in enumerate(raw.splitlines(), 1):
        if re.search(r"(PASSWORD|SECRET)\s*:", line) and "dev-only" in line:
            ctx = "\n".join(raw.splitlines()[max(0, line_no - 4):line_no])
            c.ok("DEVELOPMENT ONLY" in ctx, f"docker-compose.yml:{line_no}: secret not marked DEVELOPMENT ONLY")
    return len(services)


def check_metric_names(c, repo):
    """Every metric the alert rules and docs/operations.md name is exported by the code."""
    code = ""
    for path in sorted(glob.glob(os.path.join(repo, "api", "**", "*.c"), recursive=True)
                       + glob.glob(os.path.join(repo, "relay", "**", "*.c"), recursive=True)
                       + glob.glob(os.path.join(repo, "common", "*.c"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            code += f.read()
    pattern = re.compile(r"(?<![A-Za-z0-9_:])((?:profile|relay)_[a-z0-9_]+)")
    names = set()
    for rel in ("deploy/prometheus/profile-alerts.yaml", "docs/operations.md"):
        path = os.path.join(repo, rel)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            for name in pattern.findall(f.read()):
                names.add((rel, name))
    # Names the docs use on purpose for metrics that do not exist (yet).
    hypothetical = {"profile_http_request_duration_seconds"}
    # PostgreSQL role names (migrations/V004__roles.sql), not metrics.
    roles = {"profile_owner", "profile_app", "profile_relay"}
    checked = 0
    for rel, name in sorted(names):
        if name in hypothetical or name in roles or name.endswith("_"):
            continue
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        checked += 1
        c.ok(re.search(rf"(?<![A-Za-z0-9_]){re.escape(base)}(?:_bucket|_count|_sum)?(?![A-Za-z0-9_])", code)
             is not None,
             f"{rel}: metric {name} is not exported by api/, relay/ or common/ (renamed?)")
    return checked


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    args = ap.parse_args()
    repo = os.path.abspath(args.repo)
    config_vars = load_config_vars(repo)
    c = Checker()
    n_k8s = check_k8s(c, repo, config_vars)
    n_compose = check_compose(c, repo, config_vars)
    n_metrics = check_metric_names(c, repo)
    for p in c.problems:
        print(f"check_deploy: {p}", file=sys.stderr)
    print(f"cross-reference check: {n_k8s} Kubernetes objects, {n_compose} compose services, "
          f"{len(config_vars)} config variables, {n_metrics} metric names; {c.checks} checks, {len(c.problems)} problems")
    return 0 if not c.problems else 1


if __name__ == "__main__":
    sys.exit(main())
