# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the end-to-end suite (test_e2e.py): the whole stack started through ./run
on free loopback ports, a fake Google OAuth token endpoint + FCM HTTP v1 send endpoint that
checks what notifyd sends (RS256 assertion, bearer token, TS.43 data message), the policyd
admin API over TLS, entitle-device as the handset, Prometheus text parsing, and how the Mongo
variant finds its server (MONGO_URI, else the ctest fixture "mongo", else a server of its own,
else a skip with the reason).

Small pieces are copied from test_notifyd.py (fake FCM) and test_mongo_stack.py (the Mongo
test server) rather than imported: those modules pull in packages and module-level skips this
suite must not inherit. Python packages: pytest, cryptography."""
import base64
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

TOP = os.environ.get("ENTITLE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ENTITLE_BUILD_DIR", os.path.join(TOP, "build"))
SCALE = float(os.environ.get("ENTITLE_TEST_TIMEOUT_MULTIPLIER", "1"))
DEVICE = os.path.join(BUILD, "tools", "entitle-device")
DAEMONS = ("gateway", "authd", "policyd", "notifyd")

# 3GPP TS 35.208 test set 1 (any 16-byte values work; never use them on a real SIM).
K = "465b5ce8b199b49faa5f0a2ee238a6bc"
OPC = "cd63cb71954a9f4e48a5994e37a02baf"

FCM_PROJECT = "entitle-e2e"
FCM_CLIENT = "notifyd@entitle-e2e.iam.example"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


# ---- small helpers ------------------------------------------------------------------------------

# Test ports come from below the kernel's ephemeral range (32768-60999 here, see
# /proc/sys/net/ipv4/ip_local_port_range): a port taken from that range with bind(0) is free
# only until some outgoing connection (a daemon dialling another) is given it as its local
# port, and then the daemon meant to listen there fails with "address in use". Ranges start
# at a random place per process and are never handed out twice by one process; each port is
# checked bindable, so suites running side by side (ctest -j) skip each other's.
_PORT_LO, _PORT_HI = 20000, 32000
_ports_given = set()
_port_rng = random.Random(os.getpid() ^ int(time.time() * 1000))


def _bindable(port):
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        t.close()


def free_port_base(count):
    """A base port with `count` consecutive free ports on 127.0.0.1, below the ephemeral
    range, none handed out before by this process."""
    for _ in range(200):
        base = _port_rng.randrange(_PORT_LO, _PORT_HI - count)
        block = range(base, base + count)
        if any(p in _ports_given for p in block):
            continue
        if all(_bindable(p) for p in block):
            _ports_given.update(block)
            return base
    raise RuntimeError("no free port range")


def free_port():
    return free_port_base(1)


def wait_for(cond, timeout, what):
    """Polls cond() until it returns something truthy (returned) or fails the test after
    timeout seconds (scaled by ENTITLE_TEST_TIMEOUT_MULTIPLIER)."""
    deadline = time.time() + timeout * SCALE
    while True:
        v = cond()
        if v:
            return v
        if time.time() >= deadline:
            pytest.fail(f"timed out after {timeout * SCALE:.0f} s waiting for {what}")
        time.sleep(0.05)


def http_get(url, timeout=3):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def wait_caches_trusted(ops_port, timeout=30):
    """The gateway uses its caches only while every event publisher is connected (before
    that it answers uncached); tests that count cache hits or invalidations wait for it."""
    url = f"http://127.0.0.1:{ops_port}/readyz"
    wait_for(lambda: '"caches":"trusted"' in http_get(url)[1], timeout,
             "the gateway to connect to every event publisher")


def parse_metrics(text):
    """Prometheus 0.0.4 text -> {(name, ((label, value), ...)): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m:
            continue
        labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                         m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(tok):
    h, c, s = tok.split(".")
    return (json.loads(b64url_decode(h)), json.loads(b64url_decode(c)), (h + "." + c).encode(),
            b64url_decode(s))


# ---- fake Google OAuth + FCM HTTP v1 ------------------------------------------------------------

class FakeFcm:
    """POST /token (the service account's token_uri) and
    POST /v1/projects/<project>/messages:send on one plain-HTTP loopback server.

    /token checks the RS256 signature of the JWT assertion against the service-account key and
    its claims; messages:send checks the bearer token is one /token issued and that the body is
    a TS.43 data message (PROTOCOL §9: data has exactly `app` and `timestamp`, Android priority
    HIGH). Accepted messages are kept in `messages` as dicts {token, app, timestamp, at}; every
    check that failed is in `errors` (the suite asserts it stays empty). fail_next[token] = n
    refuses the next n sends to that token with 503 + Retry-After: 1 (FCM unavailable)."""

    def __init__(self, rsa_pub):
        self.rsa_pub = rsa_pub
        self.lock = threading.Lock()
        self.issued = []
        self.messages = []
        self.errors = []
        self.fail_next = {}  # registration token -> sends still to refuse with 503
        self.refused = []    # tokens of the sends refused that way
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def _fail(self, why):
        with self.lock:
            self.errors.append(why)

    def sent_to(self, token):
        """Messages accepted for one registration token, oldest first."""
        with self.lock:
            return [m for m in self.messages if m["token"] == token]

    def wait_count(self, token, n, timeout=30):
        """Waits until at least n messages reached `token`; returns them."""
        return wait_for(lambda: len(self.sent_to(token)) >= n and self.sent_to(token), timeout,
                        f"FCM message #{n} for {token}")

    def _handler(self):
        fcm = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/token":
                    return self.token(body)
                if self.path == f"/v1/projects/{FCM_PROJECT}/messages:send":
                    return self.send(body)
                fcm._fail(f"unexpected path {self.path}")
                self.reply(404, {"error": {"status": "NOT_FOUND"}})

            def token(self, body):
                form = dict(p.split("=", 1) for p in body.decode().split("&") if "=" in p)
                if form.get("grant_type") != "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer":
                    fcm._fail(f"grant_type {form.get('grant_type')}")
                    return self.reply(400, {"error": "unsupported_grant_type"})
                try:
                    hdr, claims, signed, sig = jwt_parts(form["assertion"])
                    fcm.rsa_pub.verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())
                except Exception as e:  # noqa: BLE001 - any defect is a refusal
                    fcm._fail(f"bad assertion: {e!r}")
                    return self.reply(400, {"error": "invalid_grant"})
                now = time.time()
                if not (hdr.get("alg") == "RS256" and hdr.get("kid") == "e2e-key-1" and
                        claims.get("iss") == FCM_CLIENT and claims.get("aud") == fcm.url("/token")
                        and claims.get("scope") == FCM_SCOPE and abs(claims["iat"] - now) < 300
                        and 0 < claims["exp"] - claims["iat"] <= 3600):
                    fcm._fail(f"bad claims {hdr} {claims}")
                    return self.reply(400, {"error": "invalid_grant"})
                with fcm.lock:
                    tok = f"ya29.e2e-{len(fcm.issued)}"
                    fcm.issued.append(tok)
                self.reply(200, {"access_token": tok, "expires_in": 3600, "token_type": "Bearer"})

            def send(self, body):
                auth = self.headers.get("Authorization", "")
                with fcm.lock:
                    good = auth.startswith("Bearer ") and auth[7:] in fcm.issued
                if not good:
                    fcm._fail("FCM send without a valid bearer token")
                    return self.reply(401, {"error": {"status": "UNAUTHENTICATED"}})
                try:
                    msg = json.loads(body)["message"]
                    reg, data = msg["token"], msg["data"]
                    ok = (set(data) == {"app", "timestamp"} and TS_RE.match(data["timestamp"])
                          and msg.get("android", {}).get("priority") == "HIGH")
                except (ValueError, KeyError, TypeError):
                    ok = False
                if not ok:
                    fcm._fail(f"bad FCM message {body!r}")
                    return self.reply(400, {"error": {"status": "INVALID_ARGUMENT"}})
                with fcm.lock:
                    if fcm.fail_next.get(reg, 0) > 0:
                        fcm.fail_next[reg] -= 1
                        fcm.refused.append(reg)
                        refuse = True
                    else:
                        refuse = False
                if refuse:
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with fcm.lock:
                    fcm.messages.append({"token": reg, "app": data["app"],
                                         "timestamp": data["timestamp"], "at": time.time()})
                    n = len(fcm.messages)
                self.reply(200, {"name": f"projects/{FCM_PROJECT}/messages/{n}"})

        return H

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def app_ids(fcm_app):
    """The FCM data `app` value as a list: one AppID, or a JSON array of them (PROTOCOL §9)."""
    if fcm_app.startswith("["):
        return json.loads(fcm_app)
    return [fcm_app]


def write_service_account(path, fcm):
    """A throw-away Google service-account key file whose token_uri is the fake; returns the
    RSA private key (its public half verifies notifyd's assertions)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    sa = {"type": "service_account", "project_id": FCM_PROJECT, "private_key_id": "e2e-key-1",
          "private_key": pem, "client_email": FCM_CLIENT, "token_uri": fcm.url("/token")}
    with open(path, "w") as f:
        json.dump(sa, f)
    os.chmod(path, 0o600)
    return key


# ---- the Mongo variant's server -----------------------------------------------------------------

MONGO_SERVER = os.environ.get("ENTITLE_MONGO_SERVER") or os.path.join(
    BUILD, "tests", "mongo", "server", "entitle-mongo-test-server")
MONGO_FIXTURE_URI = os.path.join(BUILD, "tests", "mongo", "server", "uri")


def fcm_stack_env(tmp):
    """A fake Google OAuth + FCM server and the ENTITLE_* environment that points notifyd at
    it with quick outbox retries; the per-subscriber rate limit is lifted (suites make many
    requests for one subscriber; the limiter itself is test_gateway's business). Returns
    (fcm, env); the caller closes fcm."""
    fcm = FakeFcm(None)
    fcm.rsa_pub = write_service_account(str(tmp / "fcm-sa.json"), fcm).public_key()
    env = {
        "ENTITLE_FCM_PROJECT_ID": FCM_PROJECT,
        "ENTITLE_FCM_CREDENTIALS_FILE": str(tmp / "fcm-sa.json"),
        "ENTITLE_FCM_ENDPOINT": fcm.url(),
        "ENTITLE_NOTIFY_HTTP_TIMEOUT": "5s",
        "ENTITLE_OUTBOX_BACKOFF_MIN": "100ms",
        "ENTITLE_OUTBOX_BACKOFF_MAX": "500ms",
        "ENTITLE_OUTBOX_POLL_INTERVAL": "100ms",
        "ENTITLE_RATELIMIT_SUBSCRIBER_RATE": "1000",
        "ENTITLE_RATELIMIT_SUBSCRIBER_BURST": "1000",
        "ENTITLE_LOG_LEVEL": "info",
    }
    return fcm, env


def _reachable(uri):
    m = re.match(r"^mongodb://(?:[^@/]*@)?([^:/,?]+):(\d+)", uri)
    if not m:
        return True  # a form we do not parse (SRV, several hosts): let the daemons judge
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=2).close()
        return True
    except OSError:
        return False


def _have_go():
    if os.environ.get("ENTITLE_GO") == "none":
        return False
    import shutil
    return bool(os.environ.get("ENTITLE_GO") or shutil.which("go") or
                os.access("/usr/local/go/bin/go", os.X_OK))


class MongoServer:
    """entitle-mongo-test-server (tests/mongo/server: FerretDB embedded) on a loopback port."""

    def __init__(self, workdir):
        self.dir = workdir
        self.port = free_port()
        self.uri_file = os.path.join(workdir, "uri")
        self.proc = None
        self.log = None

    @property
    def uri(self):
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self):
        self.log = open(os.path.join(self.dir, "mongo-server.log"), "ab")
        self.proc = subprocess.Popen(
            [MONGO_SERVER, "-dir", os.path.join(self.dir, "mongo-data"), "-listen",
             f"127.0.0.1:{self.port}", "-uri-file", self.uri_file, "-log-level", "error"],
            stdout=self.log, stderr=self.log)
        wait_for(lambda: (self.proc.poll() is None or pytest.fail("mongo test server exited"))
                 and os.path.exists(self.uri_file) and os.path.getsize(self.uri_file) > 0,
                 60, "the mongo test server")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30 * SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None


def resolve_mongo(workdir):
    """(uri, own_server_or_None, None) for the Mongo variant, or (None, None, reason) when it
    must be skipped. Order: MONGO_URI; the server the ctest fixture "mongo" started (its URI
    in $ENTITLE_BUILD_DIR/tests/mongo/server/uri); a server of our own from the built binary;
    otherwise skipped with the reason."""
    uri = os.environ.get("MONGO_URI")
    if uri:
        return uri, None, None
    if os.path.exists(MONGO_FIXTURE_URI):
        with open(MONGO_FIXTURE_URI) as f:
            uri = f.read().strip()
        if uri and _reachable(uri):
            return uri, None, None
    if os.access(MONGO_SERVER, os.X_OK):
        srv = MongoServer(str(workdir))
        srv.start()
        return srv.uri, srv, None
    if not _have_go():
        return None, None, ("no Go toolchain to build the Mongo-wire test server "
                            "(tests/mongo) and MONGO_URI is unset")
    return None, None, (f"the Mongo-wire test server is not built ({MONGO_SERVER}); run the "
                        "suite through ctest (fixture \"mongo\") or set MONGO_URI")


def with_query(uri, extra):
    """uri with one more query option."""
    if "?" in uri:
        return uri + "&" + extra
    return uri + ("" if uri.endswith("/") or re.search(r"://[^/]*/", uri) else "/") + "?" + extra


# ---- the stack, through ./run ---------------------------------------------------------------------

class RunStack:
    """All four daemons started by ./run (--bin $ENTITLE_BUILD_DIR --no-install) on free
    loopback ports with a temp data dir. `env` holds ENTITLE_<SECTION>_<KEY> overrides that
    ./run passes to every daemon; any ENTITLE_* of the caller's environment is dropped so a
    developer's shell cannot change what is tested."""

    def __init__(self, tmp, env):
        self.tmp = tmp
        self.data = tmp / "data"
        self.ops_base = free_port_base(4)
        self.bus_base = free_port_base(5)
        self.device_port = free_port()
        self.admin_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ENTITLE_")}
        self.env.update(env)
        self.proc = None
        self.out = []
        self.ready = threading.Event()
        self.stopped = False

    # lifecycle
    def start(self):
        self.proc = subprocess.Popen(
            [os.path.join(TOP, "run"), "--data", str(self.data), "--bin", BUILD, "--no-install",
             "--ops-base", str(self.ops_base), "--bus-base", str(self.bus_base),
             "--device-port", str(self.device_port), "--admin-port", str(self.admin_port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=TOP, env=self.env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        ok = self.ready.wait(90 * SCALE)
        if not ok or self.proc.poll() is not None:
            self.kill()
            pytest.fail(f"./run did not become ready:\n{self.output()}\n{self.logs_tail()}")
        wait_caches_trusted(self.ops_base)
        self.admin_token = (self.data / "secrets" / "admin-token").read_text().strip()
        self.cacert = str(self.data / "secrets" / "tls.crt")
        self.tls = ssl.create_default_context(cafile=self.cacert)

    def _read(self):
        for line in self.proc.stdout:
            self.out.append(line)
            if line.strip() == "entitle: ready":
                self.ready.set()
        self.ready.set()

    def output(self):
        return "".join(self.out)

    def log_events(self, daemon):
        path = self.data / "log" / f"{daemon}.log"
        return [json.loads(l) for l in path.read_text(errors="replace").splitlines()
                if l.startswith("{")]

    def logs_tail(self, n=3000):
        out = ""
        for d in DAEMONS:
            p = self.data / "log" / f"{d}.log"
            if p.exists():
                out += f"--- {d}.log\n{p.read_text(errors='replace')[-n:]}\n"
        return out

    def stop(self):
        """SIGTERM ./run (which SIGTERMs every daemon and waits); returns ./run's status and
        what it printed after `entitle: ready`."""
        self.stopped = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60 * SCALE)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"./run did not stop within {60 * SCALE:.0f} s\n{self.logs_tail()}")
        self.reader.join(10)
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            # ./run's process group would leave the daemons behind: SIGTERM first (./run
            # forwards it), then kill ./run itself.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30 * SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # ops endpoints
    def ops_url(self, daemon):
        return f"http://127.0.0.1:{self.ops_base + DAEMONS.index(daemon)}"

    def metrics(self, daemon):
        st, body = http_get(self.ops_url(daemon) + "/metrics")
        assert st == 200, (daemon, st)
        return parse_metrics(body)

    def metric(self, daemon, name, **labels):
        """One sample's value (0 when the labelled series does not exist yet)."""
        return self.metrics(daemon).get((name, tuple(sorted(labels.items()))), 0.0)

    # policyd's provisioning API (TLS, bearer token with read and write scopes)
    def admin(self, method, path, body=None, headers=None):
        import http.client
        c = http.client.HTTPSConnection("127.0.0.1", self.admin_port, context=self.tls,
                                        timeout=15 * SCALE)
        hdrs = {"Authorization": f"Bearer {self.admin_token}"}
        hdrs.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        raw = r.read().decode()
        c.close()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = raw
        return r.status, doc, dict(r.getheaders())

    # the handset
    def device(self, imsi, *args, state=None, check=0):
        """entitle-device --json --xml against the gateway; returns its JSON object (the last
        one with --count). check: the exit status required (None: any)."""
        cmd = [DEVICE, "--url", f"https://127.0.0.1:{self.device_port}/", "--cacert",
               self.cacert, "--imsi", imsi, "--k", K, "--opc", OPC, "--json", "--xml",
               "--timeout-ms", str(int(8000 * SCALE))]
        if state is not None:
            cmd += ["--state", str(state)]
        cmd += list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60 * SCALE)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        assert lines, f"entitle-device printed nothing (rc {p.returncode}): {p.stderr}"
        out = json.loads(lines[-1])
        if check is not None:
            assert p.returncode == check, (p.returncode, out, p.stderr)
        return out
