# SPDX-License-Identifier: Apache-2.0
"""Static checks of the deployment files (deploy/, docker-compose.yml) against the built
daemons and the C sources. There is no container engine or cluster here, so the files are
checked by parsers and by the daemons themselves: every ENTITLE_* variable must be a key
the daemon lists in --help, every config (compose environment, container defaults,
Kubernetes ConfigMaps plus Deployment env) must pass `entitle-<d> --check-config`, bus
addresses must name a service and the port that service listens on, probes must hit the
ops port, and every metric in the alert rules and the dashboard must be declared in the
sources (ENT_COUNTER/ENT_GAUGE/ENT_HISTOGRAM) — the running daemons' /metrics must agree
with that scan. `kubectl kustomize` and `promtool` are used when installed."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from e2e_support import free_port  # below the ephemeral port range

SRC = Path(os.environ.get("ENTITLE_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BUILD = Path(os.environ.get("ENTITLE_BUILD_DIR", SRC / "build"))
DEPLOY = SRC / "deploy"
COMPOSE = SRC / "docker-compose.yml"
K8S = DEPLOY / "k8s"
DAEMONS = ("gateway", "authd", "policyd", "notifyd")
WORKERS = ("authd", "policyd", "notifyd")
# Metrics Prometheus itself produces for every target.
PROM_BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


# ---- helpers --------------------------------------------------------------------------


def parse_duration(v):
    """Seconds from a daemon/compose duration: 250ms, 2s, 1m, 1h, 1m30s or bare ms."""
    if isinstance(v, (int, float)):
        return float(v)
    s = str(v).strip()
    if re.fullmatch(r"\d+", s):
        return int(s) / 1000.0
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h)", s):
        assert m.start() == pos, f"bad duration {v!r}"
        total += float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        pos = m.end()
    assert pos == len(s) and pos > 0, f"bad duration {v!r}"
    return total


def port_of(addr):
    """Port of host:port or tcp://host:port."""
    m = re.fullmatch(r"(?:[a-z+]+://)?(\[[^\]]+\]|[^:/]+):(\d+)", str(addr))
    assert m, f"not host:port: {addr!r}"
    return int(m.group(2))


def host_of(addr):
    m = re.fullmatch(r"(?:[a-z+]+://)?(\[[^\]]+\]|[^:/]+):(\d+)", str(addr))
    assert m, f"not host:port: {addr!r}"
    return m.group(1)


def as_list(v):
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v]
    return [x.strip() for x in str(v).split(",") if x.strip()]


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def binary(d):
    return BUILD / d / f"entitle-{d}"


def daemon_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTITLE_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def check_config(d, env, config=None):
    """Runs entitle-<d> --check-config; returns the effective configuration (a dict)."""
    cmd = [str(binary(d)), "--check-config"]
    if config:
        cmd += ["--config", str(config)]
    r = subprocess.run(cmd, env=daemon_env(env), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{d} --check-config {config or ''} with {env}: {r.stderr.strip()}"
    return yaml.safe_load(r.stdout)


def deploy_files(*exts):
    out = sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in exts)
    return out


# ---- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env_names():
    """ENTITLE_* variables each built daemon accepts, from its --help."""
    names = {}
    for d in DAEMONS:
        b = binary(d)
        if not b.exists():
            pytest.fail(f"{b} is not built (ENTITLE_BUILD_DIR={BUILD})")
        r = subprocess.run([str(b), "--help"], capture_output=True, text=True, timeout=30,
                           env=daemon_env({}))
        found = set(re.findall(r"\bENTITLE_[A-Z0-9_]*[A-Z0-9]\b", r.stdout + r.stderr))
        assert {"ENTITLE_OPS_LISTEN", "ENTITLE_BUS_LISTEN", "ENTITLE_STORE_URI"} <= found, \
            f"{d} --help lists no keys: {r.stdout[:300]}"
        names[d] = found
    return names


@pytest.fixture(scope="module")
def declared_metrics():
    """Metric family name -> type, from the C sources' declarations."""
    decl = re.compile(r"\b(ENT_COUNTER|ENT_GAUGE|ENT_HISTOGRAM)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"")
    func = re.compile(r"ent_gauge_func_register\(\s*[^,()]+,\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"")
    kinds = {"ENT_COUNTER": "counter", "ENT_GAUGE": "gauge", "ENT_HISTOGRAM": "histogram"}
    out = {}
    for top in ("common", "gateway", "authd", "policyd", "notifyd"):
        for f in (SRC / top).rglob("*.c"):
            text = f.read_text(encoding="utf-8", errors="replace")
            for m in decl.finditer(text):
                out[m.group(2)] = kinds[m.group(1)]
            for m in func.finditer(text):
                out[m.group(1)] = "gauge"
    # The registry's own counter (common/src/metrics.c, DROPPED_NAME).
    m = re.search(r'#define DROPPED_NAME "([a-z_]+)"', (SRC / "common/src/metrics.c").read_text())
    if m:
        out[m.group(1)] = "counter"
    assert "entitle_ready" in out and "entitle_bus_client_call_seconds" in out, out
    return out


@pytest.fixture(scope="module")
def compose():
    with open(COMPOSE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def compose_daemon_services(compose):
    out = {}
    for name, svc in compose["services"].items():
        target = (svc.get("build") or {}).get("target")
        if target in DAEMONS:
            out[name] = (target, svc)
    return out


def compose_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


@pytest.fixture(scope="module")
def compose_effective(compose, env_names):
    """Service name -> (daemon, effective config) as the container would see it: the
    image's /etc/entitle/<d>.yaml plus the service's environment."""
    out = {}
    for name, (d, svc) in compose_daemon_services(compose).items():
        out[name] = (d, check_config(d, compose_env(svc), DEPLOY / "docker/config" / f"{d}.yaml"))
    return out


@pytest.fixture(scope="module")
def k8s_docs():
    kust = load_yaml_docs(K8S / "kustomization.yaml")[0]
    docs = []
    for r in kust["resources"]:
        docs += load_yaml_docs(K8S / r)
    return docs


def k8s_config_files():
    kust = load_yaml_docs(K8S / "kustomization.yaml")[0]
    out = {}
    for g in kust.get("configMapGenerator", []):
        for f in g.get("files", []):
            key, _, path = f.partition("=") if "=" in f else (Path(f).name, "", f)
            out[g["name"]] = (key, K8S / path)
    return out


# ---- every file parses ----------------------------------------------------------------


def test_deploy_files_parse():
    files = deploy_files(".yml", ".yaml", ".json") + [COMPOSE]
    assert len(files) >= 15, files
    for p in files:
        if p.suffix == ".json":
            with open(p, encoding="utf-8") as f:
                json.load(f)
            continue
        text = p.read_text(encoding="utf-8")
        assert text.startswith("# SPDX-License-Identifier:"), f"{p}: no SPDX line"
        assert load_yaml_docs(p), f"{p}: empty"
    for p in deploy_files(".sh", ".md") + [DEPLOY / "docker/Dockerfile"]:
        assert p.read_text(encoding="utf-8").strip(), p
    r = subprocess.run(["bash", "-n", str(DEPLOY / "docker/dev-secrets.sh")], capture_output=True)
    assert r.returncode == 0, r.stderr


# ---- docker-compose.yml ---------------------------------------------------------------


def test_compose_env_keys_are_config_keys(compose, env_names):
    services = compose_daemon_services(compose)
    assert sorted(d for d, _ in services.values()) == sorted(DAEMONS)
    for name, (d, svc) in services.items():
        env = compose_env(svc)
        unknown = sorted(k for k in env if k.startswith("ENTITLE_") and k not in env_names[d])
        assert not unknown, f"compose service {name} ({d}): not a config key: {unknown}"
        others = sorted(k for k in env if not k.startswith("ENTITLE_"))
        assert not others, f"compose service {name}: unexpected variables {others}"


def test_compose_configs_are_valid_and_wired(compose, compose_effective):
    services = compose["services"]
    mongo = services["mongo"]
    assert "--replSet" in mongo["command"]
    rs = mongo["command"][mongo["command"].index("--replSet") + 1]
    probe = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in probe and "isWritablePrimary" in probe and rs in probe
    bus = {}
    events = {}
    for name, (d, cfg) in compose_effective.items():
        assert cfg["store"]["backend"] == "mongo", name
        assert f"replicaSet={rs}" in cfg["store"]["uri"], name
        assert host_of(cfg["store"]["uri"].split("//", 1)[1].split("/", 1)[0]) in services
        assert host_of(cfg["ops"]["listen"]) == "0.0.0.0", name
        bus[name] = port_of(cfg["bus"]["listen"])
        if d == "policyd":
            events[name] = port_of(cfg["events"]["listen"])
            assert cfg["admin"]["tls_cert"] and cfg["admin"]["tokens_file"]
        if d == "authd":
            assert cfg["auth"]["seal_keyring"] and cfg["auth"]["kek_file"]
        if d == "gateway":
            assert port_of(cfg["device"]["listen"]) == 8443 and cfg["device"]["tls_cert"]
    daemon_of = {n: d for n, (d, _) in compose_effective.items()}

    def check_peer(addr, want, table, who):
        host, port = host_of(addr), port_of(addr)
        assert host in table and daemon_of[host] == want, f"{who}: {addr} is not a {want} service"
        assert table[host] == port, f"{who}: {addr}: {host} listens on {table[host]}"

    for name, (d, cfg) in compose_effective.items():
        if d == "gateway":
            for w in WORKERS:
                assert cfg["upstream"][w], f"{name}: no upstream {w}"
                for a in as_list(cfg["upstream"][w]):
                    check_peer(a, w, bus, name)
            for a in as_list(cfg["events"]["policyd"]):
                check_peer(a, "policyd", events, name)
        if d == "policyd":
            for w in ("authd", "notifyd"):
                for a in as_list(cfg["upstream"][w]):
                    check_peer(a, w, bus, name)
        if d == "notifyd":
            assert cfg["notify"]["policyd"]
            for a in as_list(cfg["notify"]["policyd"]):
                check_peer(a, "policyd", bus, name)


def test_compose_lifecycle_secrets_and_mounts(compose, compose_effective):
    services = compose["services"]
    dev_secrets = (DEPLOY / "docker/dev-secrets.sh").read_text()
    for name, (d, cfg) in compose_effective.items():
        svc = services[name]
        drain = parse_duration(cfg["drain"]["delay"]) + parse_duration(cfg["drain"]["grace"])
        assert parse_duration(svc["stop_grace_period"]) > drain, name
        assert svc.get("stop_signal", "SIGTERM") == "SIGTERM"
        deps = svc["depends_on"]
        assert deps["mongo"]["condition"] == "service_healthy", name
        test = " ".join(svc["healthcheck"]["test"])
        assert f":{port_of(cfg['ops']['listen'])}/readyz" in test, name
        assert (SRC / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        for s in svc.get("secrets", []):
            s = s if isinstance(s, str) else s["source"]
            assert s in compose["secrets"], f"{name}: undefined secret {s}"
        # Every /run/secrets path the config names is a secret the service mounts.
        for v in re.findall(r"/run/secrets/([A-Za-z0-9_.-]+)", json.dumps(cfg)):
            assert v in svc.get("secrets", []), f"{name} uses /run/secrets/{v} without mounting it"
        if d == "gateway":
            for w in WORKERS:
                workers = [n for n, (dd, _) in compose_effective.items() if dd == w]
                assert any(deps.get(n, {}).get("condition") == "service_healthy" for n in workers)
    for s in compose["secrets"].values():
        path = Path(s["file"])
        assert path.parts[:2] == ("var", "secrets"), s
        assert re.search(r"\b" + re.escape(path.name) + r"\b", dev_secrets), \
            f"dev-secrets.sh does not write {path.name}"
    for name in ("prometheus", "grafana"):
        for v in services[name]["volumes"]:
            src = v.split(":")[0]
            if src.startswith("."):
                assert (SRC / src).exists(), f"{name}: {src} does not exist"
    prom = " ".join(services["prometheus"]["volumes"])
    assert "deploy/prometheus/alerts.yml" in prom


def test_prometheus_scrapes_every_ops_port(compose_effective):
    cfg = load_yaml_docs(DEPLOY / "prometheus/prometheus.yml")[0]
    assert "/etc/prometheus/alerts.yml" in cfg["rule_files"]
    targets = set()
    for job in cfg["scrape_configs"]:
        for sc in job.get("static_configs", []):
            targets |= set(sc["targets"])
    for name, (_, eff) in compose_effective.items():
        assert f"{name}:{port_of(eff['ops']['listen'])}" in targets, f"{name} ops port not scraped"
    k8s = load_yaml_docs(DEPLOY / "prometheus/prometheus-k8s.yml")[0]
    relabel = json.dumps(k8s["scrape_configs"][0]["relabel_configs"])
    assert "prometheus_io_scrape" in relabel and "prometheus_io_port" in relabel


# ---- Dockerfile -----------------------------------------------------------------------


def dockerfile_instructions(path):
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile():
    path = DEPLOY / "docker/Dockerfile"
    stages, cur = {}, None
    ignore = [l.strip().rstrip("/") for l in
              (DEPLOY / "docker/Dockerfile.dockerignore").read_text().splitlines()
              if l.strip() and not l.startswith("#")]
    for word, rest in dockerfile_instructions(path):
        if word == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            cur = {"from": m.group(1), "ins": []}
            stages[m.group(2) or m.group(1)] = cur
            continue
        if cur is not None:
            cur["ins"].append((word, rest))
            if word in ("COPY", "ADD"):
                args = rest.split()
                if args[0].startswith("["):
                    args = json.loads(rest)
                frm = [a for a in args if a.startswith("--from=")]
                srcs = [a for a in args if not a.startswith("--")][:-1]
                if frm:
                    assert frm[0][7:] in stages, f"COPY --from unknown stage {frm[0]}"
                    continue
                for s in srcs:
                    assert (SRC / s).exists(), f"Dockerfile COPY {s}: no such path"
                    top = s.rstrip("/").split("/")[0]
                    assert top not in ignore and s.rstrip("/") not in ignore, \
                        f"COPY {s} is excluded by Dockerfile.dockerignore"
    assert stages["build"]["from"].startswith("${DEBIAN_IMAGE}") or "debian:12" in stages["build"]["from"]
    build_pkgs = " ".join(r for w, r in stages["build"]["ins"] if w == "RUN")
    deps = (SRC / "tools/deps.sh").read_text()
    want = re.search(r"ENT_PKGS_BUILD=\(([^)]*)\)", deps).group(1).split()
    missing = [p for p in want if not re.search(r"(?<![\w.-])" + re.escape(p) + r"(?![\w.-])", build_pkgs)]
    assert not missing, f"build stage lacks packages of tools/deps.sh: {missing}"
    runtime = " ".join(r for w, r in stages["runtime"]["ins"] if w == "RUN")
    assert not re.search(r"\S+-dev\b", runtime), "runtime stage installs -dev packages"
    users = [r for w, r in stages["runtime"]["ins"] if w == "USER"]
    assert users and not re.match(r"(0|root)(:|$)", users[-1]), "runtime runs as root"
    assert ("STOPSIGNAL", "SIGTERM") in stages["runtime"]["ins"]
    for d in DAEMONS:
        st = stages[d]
        assert st["from"] == "runtime", d
        ins = st["ins"]
        assert not any(w == "USER" for w, _ in ins), f"{d} stage changes the user"
        ops = port_of(load_yaml_docs(DEPLOY / "docker/config" / f"{d}.yaml")[0]["ops"]["listen"])
        hc = " ".join(r for w, r in ins if w == "HEALTHCHECK")
        assert f"127.0.0.1:{ops}/healthz" in hc, f"{d}: HEALTHCHECK {hc}"
        exposed = {int(p) for w, r in ins if w == "EXPOSE" for p in r.split()}
        assert ops in exposed, d
        assert {"gateway": {8443}, "policyd": {8444, 7112}}.get(d, set()) <= exposed, d
        copies = " ".join(r for w, r in ins if w == "COPY")
        assert f"/src/build/{d}/entitle-{d}" in copies, d
        entry = json.loads(next(r for w, r in ins if w == "ENTRYPOINT"))
        cmd = json.loads(next(r for w, r in ins if w == "CMD"))
        assert entry[0].endswith(f"entitle-{d}") and cmd == ["--config", f"/etc/entitle/{d}.yaml"]
        # The defaults baked into the image are valid and listen beyond loopback.
        eff = check_config(d, {}, DEPLOY / "docker/config" / f"{d}.yaml")
        assert host_of(eff["ops"]["listen"]) == "0.0.0.0"


# ---- Kubernetes -----------------------------------------------------------------------


def test_kustomization_resources_exist(k8s_docs):
    kust = load_yaml_docs(K8S / "kustomization.yaml")[0]
    for r in kust["resources"]:
        assert (K8S / r).is_file(), f"kustomization resource {r} does not exist"
    for name, (_, path) in k8s_config_files().items():
        assert path.is_file(), f"configMapGenerator {name}: {path} does not exist"
    for doc in k8s_docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
    kinds = [d["kind"] for d in k8s_docs]
    for k, n in (("Deployment", 4), ("HorizontalPodAutoscaler", 4), ("PodDisruptionBudget", 4),
                 ("Namespace", 1)):
        assert kinds.count(k) == n, (k, kinds)
    if shutil.which("kubectl"):
        r = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        built = [d for d in yaml.safe_load_all(r.stdout) if d]
        assert all(d["metadata"].get("namespace") == "entitle" for d in built
                   if d["kind"] != "Namespace")
        cms = {d["metadata"]["name"] for d in built if d["kind"] == "ConfigMap"}
        for dep in (d for d in built if d["kind"] == "Deployment"):
            for v in dep["spec"]["template"]["spec"]["volumes"]:
                if "configMap" in v:
                    assert v["configMap"]["name"] in cms


def test_k8s_deployments(k8s_docs, env_names):
    deployments = {d["metadata"]["name"]: d for d in k8s_docs if d["kind"] == "Deployment"}
    assert sorted(deployments) == sorted(DAEMONS)
    cfgs = k8s_config_files()
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        (c,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        # Config: the ConfigMap file the args name, plus the env, must pass --check-config.
        args = c["args"]
        cfg_path = Path(args[args.index("--config") + 1])
        mount = next(m for m in c["volumeMounts"] if str(cfg_path).startswith(m["mountPath"] + "/"))
        vol = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        key, file = cfgs[vol["configMap"]["name"]]
        assert key == cfg_path.name, (name, key)
        env = {}
        for e in c.get("env", []):
            assert e["name"] in env_names[name], f"{name}: {e['name']} is not a config key"
            if "value" in e:
                env[e["name"]] = e["value"]
            elif "secretKeyRef" in e.get("valueFrom", {}):
                env[e["name"]] = "mongodb://mongo-0.mongo:27017/?replicaSet=rs0" \
                    if e["name"] == "ENTITLE_STORE_URI" else "placeholder"
            else:
                env[e["name"]] = f"{name}-pod"
        eff = check_config(name, env, file)
        assert eff["store"]["backend"] == "mongo"
        ops = port_of(eff["ops"]["listen"])
        assert host_of(eff["ops"]["listen"]) == "0.0.0.0" and ports["ops"] == ops, name
        # Probes on the ops port.
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                            ("readinessProbe", "/readyz")):
            p = c[probe]["httpGet"]
            port = ports[p["port"]] if isinstance(p["port"], str) else p["port"]
            assert p["path"] == path and port == ops, f"{name} {probe}: {p}"
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == ops
        assert ann["prometheus.io/path"] == "/metrics"
        # Drain: readiness fails for longer than the probe needs to notice, and the kill
        # comes after delay + grace.
        rp = c["readinessProbe"]
        delay, grace = parse_duration(eff["drain"]["delay"]), parse_duration(eff["drain"]["grace"])
        assert delay > rp.get("periodSeconds", 10) * rp.get("failureThreshold", 3), name
        assert pod["terminationGracePeriodSeconds"] > delay + grace, name
        assert "lifecycle" not in c, f"{name}: drain needs no preStop hook"
        # Hardening and resources.
        sc, psc = c["securityContext"], pod.get("securityContext", {})
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
        assert psc.get("runAsUser", 0) != 0
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
        # Files the config names are mounted.
        mounted = [m["mountPath"] for m in c["volumeMounts"]]
        for v in re.findall(r'"(/etc/entitle/[^"]+)"', json.dumps(eff)):
            assert any(v.startswith(m + "/") for m in mounted), f"{name}: {v} is not mounted"
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        objs = [d for d in k8s_docs if d["kind"] == kind]
        for name, dep in deployments.items():
            if kind == "HorizontalPodAutoscaler":
                hit = [o for o in objs if o["spec"]["scaleTargetRef"]["name"] == name]
                assert hit and hit[0]["spec"]["minReplicas"] >= 2, f"no HPA for {name}"
            else:
                sel = dep["spec"]["selector"]["matchLabels"]
                assert [o for o in objs if o["spec"]["selector"]["matchLabels"] == sel], name


def test_k8s_services_and_bus_addresses(k8s_docs):
    services = {d["metadata"]["name"]: d for d in k8s_docs if d["kind"] == "Service"}
    deployments = {d["metadata"]["name"]: d for d in k8s_docs if d["kind"] == "Deployment"}
    cport = {n: {p["name"]: p["containerPort"]
                 for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]}
             for n, d in deployments.items()}

    def target_of(svc):
        sel = svc["spec"]["selector"]
        hit = [n for n, d in deployments.items()
               if sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(hit) == 1, svc["metadata"]["name"]
        return hit[0]

    for name, svc in services.items():
        t = target_of(svc)
        for p in svc["spec"]["ports"]:
            tp = p["targetPort"]
            assert (cport[t][tp] if isinstance(tp, str) else tp) in cport[t].values(), (name, p)
    for w in WORKERS:
        svc = services[f"{w}-bus"]
        assert svc["spec"].get("clusterIP") == "None", f"{w}-bus must be headless"
    assert services["gateway"]["spec"]["ports"][0]["port"] == 8443
    assert services["policyd-admin"]["spec"]["ports"][0]["port"] == 8444
    assert services["policyd-admin"]["spec"].get("clusterIP") != "None"
    # Every bus address in a config names a headless Service port that reaches the right pods.
    cfgs = {Path(p).stem: load_yaml_docs(p)[0] for _, p in k8s_config_files().values()}
    addrs = []
    for w in WORKERS:
        addrs += [(a, w) for a in cfgs["gateway"]["upstream"][w]]
    addrs += [(a, "policyd") for a in cfgs["gateway"]["events"]["policyd"]]
    addrs += [(a, w) for w in ("authd", "notifyd") for a in cfgs["policyd"]["upstream"][w]]
    addrs += [(a, "policyd") for a in cfgs["notifyd"]["notify"]["policyd"]]
    for a, want in addrs:
        host = host_of(a).split(".")[0]
        assert host in services and services[host]["spec"].get("clusterIP") == "None", a
        assert target_of(services[host]) == want, a
        assert port_of(a) in [p["port"] for p in services[host]["spec"]["ports"]], a


def test_k8s_network_policies_and_secrets(k8s_docs):
    pols = {d["metadata"]["name"]: d["spec"] for d in k8s_docs if d["kind"] == "NetworkPolicy"}
    deny = [s for s in pols.values() if s["podSelector"] == {} and not s.get("ingress")
            and not s.get("egress") and set(s["policyTypes"]) == {"Ingress", "Egress"}]
    assert deny, "no default-deny NetworkPolicy"

    def ingress_ports(target):
        out = set()
        for s in pols.values():
            sel = s["podSelector"].get("matchLabels", {})
            if sel and sel.get("app.kubernetes.io/name") != target:
                continue
            for rule in s.get("ingress", []):
                out |= {p["port"] for p in rule.get("ports", [])}
        return out

    assert 8443 in ingress_ports("gateway")
    assert {7102, 7112, 8444, 9102} <= ingress_ports("policyd")
    assert {7101, 9101} <= ingress_ports("authd") and {7103, 9103} <= ingress_ports("notifyd")
    egress = json.dumps([s.get("egress", []) for s in pols.values()])
    for port in (53, 27017, 443, 7101, 7102, 7103, 7112):
        assert f'"port": {port}' in egress, f"no egress rule for {port}"
    for s in (d for d in k8s_docs if d["kind"] == "Secret"):
        values = list((s.get("stringData") or {}).values()) + list((s.get("data") or {}).values())
        assert values, s["metadata"]["name"]
        for v in values:
            assert "REPLACE" in v, f"secret {s['metadata']['name']} holds a non-placeholder value"
            assert "BEGIN" not in v and not re.search(r"[0-9a-fA-F]{32}", v)


# ---- metrics: alert rules and dashboard ---------------------------------------------


def metric_names(expr):
    """Metric names in a PromQL expression (label matchers and strings removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    words = re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", e)
    keywords = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan", "le"}
    return {w for w in words if w.lower() not in keywords}


def check_metric(name, declared, where):
    if name in PROM_BUILTIN:
        return
    if name in declared:
        assert declared[name] != "histogram", f"{where}: histogram {name} used without a suffix"
        return
    m = re.fullmatch(r"(.+)_(bucket|sum|count)", name)
    assert m and declared.get(m.group(1)) == "histogram", f"{where}: metric {name} is not declared"


def alert_rules():
    return load_yaml_docs(DEPLOY / "prometheus/alerts.yml")[0]


def test_alert_rules_structure():
    doc = alert_rules()
    assert set(doc) == {"groups"} and doc["groups"]
    seen_groups, seen_alerts = set(), set()
    for g in doc["groups"]:
        assert set(g) <= {"name", "interval", "rules", "limit"}, g.keys()
        assert g["name"] not in seen_groups and g["rules"]
        seen_groups.add(g["name"])
        for r in g["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations",
                              "keep_firing_for"}, r.keys()
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", r["alert"]) and r["alert"] not in seen_alerts
            seen_alerts.add(r["alert"])
            expr = r["expr"]
            assert isinstance(expr, str) and expr.strip()
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
            assert re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", str(r["for"])), r["for"]
            assert r["labels"]["severity"] in ("critical", "warning", "info")
            assert all(isinstance(v, str) for v in r["labels"].values())
            assert r["annotations"]["summary"] and r["annotations"]["description"]
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "rules", str(DEPLOY / "prometheus/alerts.yml")],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr


def test_alert_and_dashboard_metrics_exist(declared_metrics):
    used_alerts = set()
    for g in alert_rules()["groups"]:
        for r in g["rules"]:
            names = metric_names(r["expr"])
            assert names, r["alert"]
            for n in names:
                check_metric(n, declared_metrics, f"alert {r['alert']}")
            used_alerts |= names
    for want in ("entitle_ready", "entitle_gateway_worker_up", "entitle_bus_client_saturated_total",
                 "entitle_bus_client_call_seconds_bucket", "entitle_notifyd_outbox_pending",
                 "entitle_notifyd_outbox_oldest_pending_seconds", "entitle_notifyd_dead_letters_total"):
        assert want in used_alerts, f"no alert on {want}"
    with open(DEPLOY / "grafana/dashboards/entitle.json", encoding="utf-8") as f:
        dash = json.load(f)
    ds = load_yaml_docs(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")[0]
    uids = {d["uid"] for d in ds["datasources"]}
    prov = load_yaml_docs(DEPLOY / "grafana/provisioning/dashboards/entitle.yml")[0]
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    ids, used = set(), set()
    for p in dash["panels"]:
        assert p["id"] not in ids
        ids.add(p["id"])
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] in uids and p["targets"], p["title"]
        for t in p["targets"]:
            names = metric_names(t["expr"])
            assert names, t["expr"]
            for n in names:
                check_metric(n, declared_metrics, f"panel {p['title']}")
            used |= names
    for want in ("entitle_ready", "entitle_gateway_worker_up", "entitle_bus_client_call_seconds_bucket",
                 "entitle_bus_rpc_replies_total", "entitle_bus_client_saturated_total",
                 "entitle_policyd_api_requests_total", "entitle_notifyd_outbox_pending"):
        assert want in used, f"dashboard has no panel on {want}"
    exprs = json.dumps(dash)
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs


def test_running_daemon_metrics_match_declarations(declared_metrics):
    """The source scan sees every family a running daemon exposes (notifyd on SQLite)."""
    with tempfile.TemporaryDirectory() as tmp:
        ops, bus = free_port(), free_port()
        env = {"ENTITLE_STORE_PATH": f"{tmp}/entitle.db", "ENTITLE_OPS_LISTEN": f"127.0.0.1:{ops}",
               "ENTITLE_BUS_LISTEN": f"tcp://127.0.0.1:{bus}", "ENTITLE_NOTIFY_POLICYD": "",
               "ENTITLE_OUTBOX_POLL_INTERVAL": "100ms"}
        with open(f"{tmp}/log", "wb") as log:
            proc = subprocess.Popen([str(binary("notifyd"))], env=daemon_env(env), stdout=log,
                                    stderr=subprocess.STDOUT)
        try:
            body, deadline = None, time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{ops}/metrics", timeout=2) as r:
                        text = r.read().decode()
                    if "entitle_notifyd_outbox_pending" in text:
                        body = text
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            assert body, f"notifyd served no metrics: {Path(tmp, 'log').read_text()[-2000:]}"
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0
    families = set(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))
    assert families
    for name, kind in families:
        assert declared_metrics.get(name) == kind, f"/metrics has {name} ({kind}), the scan has {declared_metrics.get(name)}"


def test_operations_doc_has_deployment_section():
    text = (SRC / "docs/operations.md").read_text(encoding="utf-8")
    section = text.split("\n## Deployment\n", 1)
    assert len(section) == 2 and "deploy/README.md" in section[1]
