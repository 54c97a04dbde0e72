# SPDX-License-Identifier: Apache-2.0
"""The gateway end to end (issue #6): all four daemons on loopback (SQLite in a temp dir,
HTTPS device listener with a throw-away certificate), subscribers provisioned through
policyd's admin API, and entitle-device as the handset. Covers the first-time flow (XML and
JSON, GET and POST, several AppIDs), token reuse, revoked token -> 511 -> re-auth, resync,
wrong RES, expired and replayed cookie, version negotiation (2.0, 8.0, 10.0, 12.0), a
provisioning change visible on the very next request, authd killed -> 503 then recovery,
certificate reload on SIGHUP, and a table of malformed requests answered while the daemons
keep serving. Every daemon must exit 0 on SIGTERM."""
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

TOP = os.environ.get("ENTITLE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ENTITLE_BUILD_DIR", os.path.join(TOP, "build"))
SCALE = float(os.environ.get("ENTITLE_TEST_TIMEOUT_MULTIPLIER", "1"))
DEVICE = os.path.join(BUILD, "tools", "entitle-device")
ADMIN_TOKEN = "test-admin-token-0123456789"

# Two demo SIMs (3GPP TS 35.208 test set 1 keys; any 16-byte values work).
K = "465b5ce8b199b49faa5f0a2ee238a6bc"
OPC = "cd63cb71954a9f4e48a5994e37a02baf"
SUB1 = "001010000000001"
SUB2 = "001010000000002"
SUB3 = "001010000000003"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_get(url, timeout=3):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


class Stack:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = {}
        self.ports = {}
        for d in ("gateway", "authd", "policyd", "notifyd"):
            self.ports[d] = {"ops": free_port(), "bus": free_port()}
        self.device_port = free_port()
        self.admin_port = free_port()
        self.events_port = free_port()
        sec = tmp / "secrets"
        sec.mkdir()
        self.cert, self.key = str(sec / "tls.crt"), str(sec / "tls.key")
        self.make_cert()
        (sec / "seal.keyring").write_text("1 " + os.urandom(32).hex() + "\n")
        (sec / "kek.hex").write_text(os.urandom(32).hex() + "\n")
        (sec / "admin-tokens").write_text(ADMIN_TOKEN + "\n")
        self.db = str(tmp / "entitle.db")
        self.logs = tmp / "log"
        self.logs.mkdir()
        self.env = dict(os.environ)
        self.env.pop("ENTITLE_RATELIMIT_ENABLED", None)

    def make_cert(self):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", self.key, "-out", self.cert],
            check=True, capture_output=True)

    def config(self, d):
        p = self.ports
        lines = [
            "log:", "  level: info",
            "ops:", f"  listen: \"127.0.0.1:{p[d]['ops']}\"",
            "bus:", f"  listen: \"tcp://127.0.0.1:{p[d]['bus']}\"",
            "store:", "  backend: sqlite", f"  path: \"{self.db}\"",
            "drain:", "  grace: 5s",
        ]
        bus = lambda w: f"tcp://127.0.0.1:{p[w]['bus']}"
        if d == "authd":
            lines += ["auth:", f"  seal_keyring: \"{self.tmp}/secrets/seal.keyring\"",
                      f"  kek_file: \"{self.tmp}/secrets/kek.hex\"",
                      "  home_networks: [\"001-01\"]", "  exchange_ttl: 2s"]
        if d == "policyd":
            lines += ["admin:", f"  listen: \"127.0.0.1:{self.admin_port}\"", "  tls: false",
                      f"  tokens_file: \"{self.tmp}/secrets/admin-tokens\"",
                      "events:", f"  listen: \"tcp://127.0.0.1:{self.events_port}\"",
                      "upstream:", f"  authd: [\"{bus('authd')}\"]",
                      f"  notifyd: [\"{bus('notifyd')}\"]"]
        if d == "gateway":
            lines += ["upstream:", f"  authd: [\"{bus('authd')}\"]",
                      f"  policyd: [\"{bus('policyd')}\"]", f"  notifyd: [\"{bus('notifyd')}\"]",
                      "  timeout: 1s", "  ping_interval: 200ms", "  retry_after: 7",
                      "device:", f"  listen: \"127.0.0.1:{self.device_port}\"",
                      f"  tls_cert: \"{self.cert}\"", f"  tls_key: \"{self.key}\"", "  loops: 2",
                      "ratelimit:", "  ip_rate: 100000", "  ip_burst: 100000",
                      "  subscriber_rate: 100000", "  subscriber_burst: 100000",
                      "events:", f"  policyd: [\"tcp://127.0.0.1:{self.events_port}\"]"]
        path = self.tmp / f"{d}.yaml"
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    def start(self, d):
        log = open(self.logs / f"{d}.log", "ab")
        self.procs[d] = subprocess.Popen(
            [os.path.join(BUILD, d, f"entitle-{d}"), "--config", self.config(d)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()

    def wait_ready(self, d, timeout=20):
        deadline = time.time() + timeout * SCALE
        while time.time() < deadline:
            st, _ = http_get(f"http://127.0.0.1:{self.ports[d]['ops']}/readyz", timeout=1)
            if st == 200:
                return
            if self.procs[d].poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{d} not ready:\n{self.log(d)[-3000:]}")

    def log(self, d):
        return (self.logs / f"{d}.log").read_text(errors="replace")

    def stop(self, d, expect=0):
        p = self.procs.pop(d)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=20 * SCALE)
        assert rc == expect, f"{d} exited {rc}:\n{self.log(d)[-3000:]}"

    # ---- policyd admin API
    def admin(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10 * SCALE)
        hdrs = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        data = None
        if body is not None:
            data = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        out = r.status, r.read().decode()
        c.close()
        return out

    # ---- the handset
    def device(self, imsi, *args, state=None, check=None):
        cmd = [DEVICE, "--url", f"https://127.0.0.1:{self.device_port}/", "--cacert", self.cert,
               "--imsi", imsi, "--k", K, "--opc", OPC, "--json", "--timeout-ms",
               str(int(5000 * SCALE))]
        if state:
            cmd += ["--state", str(state)]
        cmd += list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30 * SCALE)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        assert lines, f"entitle-device printed nothing (rc {p.returncode}): {p.stderr}"
        outs = [json.loads(l) for l in lines]
        if check is not None:
            assert p.returncode == check, (p.returncode, outs, p.stderr)
        return outs[-1] if len(outs) == 1 else outs

    # ---- raw HTTPS to the device port
    def raw(self, method, target, body=None, headers=None):
        ctx = ssl.create_default_context(cafile=self.cert)
        c = http.client.HTTPSConnection("127.0.0.1", self.device_port, context=ctx,
                                        timeout=5 * SCALE)
        c.request(method, target, body=body, headers=headers or {})
        r = c.getresponse()
        out = r.status, dict(r.getheaders()), r.read()
        c.close()
        return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("gw"))
    for d in ("authd", "notifyd", "policyd"):
        s.start(d)
    for d in ("authd", "notifyd", "policyd"):
        s.wait_ready(d)
    s.start("gateway")
    s.wait_ready("gateway")
    st, body = s.admin("POST", "/v1/plans", {
        "id": "gold", "name": "Gold",
        "services": {"volte": True, "vowifi": True, "vonr": True, "smsoip": True}})
    assert st in (200, 201), body
    for imsi in (SUB1, SUB2, SUB3):
        st, body = s.admin("POST", "/v1/subscribers",
                           {"imsi": imsi, "plan": "gold", "k": K, "opc": OPC})
        assert st == 201, body
    yield s
    for d in ("gateway", "policyd", "notifyd", "authd"):
        if d in s.procs:
            s.stop(d)


def test_gateway_first_time_flow_xml_get(stack, tmp_path):
    out = stack.device(SUB1, "--apps", "ap2004,ap2003,ap2005", "--xml", check=0)
    assert out["status"] == 200 and out["auth"] == "full", out
    assert out["content_type"] == "text/vnd.wap.connectivity-xml"
    doc = out["document"]
    assert doc.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<wap-provisioningdoc version="1.1">')
    assert doc.count('<characteristic type="APPLICATION">') == 3
    p = out["params"]
    assert p["ap2004.EntitlementStatus"] == "1" and p["ap2005.EntitlementStatus"] == "1"
    assert p["ap2003.EntitlementStatus"] == "1"
    assert p["Token.token"] and int(p["Token.validity"]) > 0
    assert int(p["Vers.version"]) > 0
    assert re.fullmatch(r"ECSID=[A-Za-z0-9_-]+", out["cookie"]), out["cookie"]
    # PROTOCOL §5.1: parm elements, nothing nested in ap2004/ap2005 (v2.0: flat ap2003 too)
    assert "<param " not in doc and "VoiceOverCellularEntitleInfo" not in doc
    assert "eap-relay-packet" not in doc
