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

import pytest

from e2e_support import free_port, http_get, wait_caches_trusted

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
                      "  timeout: 3s", "  ping_interval: 200ms", "  retry_after: 7",
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
    wait_caches_trusted(s.ports["gateway"]["ops"])
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


def test_gateway_first_time_flow_json_post_several_apps(stack, tmp_path):
    out = stack.device(SUB2, "--post", "--apps", "ap2004,ap2005,ap2016", "--version", "10.0",
                       check=0)
    assert out["status"] == 200 and out["content_type"] == "application/json", out
    doc = json.loads(out["document"])
    assert set(doc) == {"Vers", "Token", "ap2004", "ap2005", "ap2016"}, doc
    assert all(isinstance(v, str) for v in doc["ap2004"].values())
    assert doc["ap2004"]["EntitlementStatus"] == "1"
    assert doc["ap2016"]["EntitlementStatus"] == "2"  # policyd does not decide SatMode
    assert "eap-relay-packet" not in doc and "AppID" not in doc["ap2004"]


def test_gateway_old_cookie_style_and_aka_prime(stack):
    # older AOSP replays the whole Set-Cookie value; AKA' identities start with '6'
    out = stack.device(SUB3, "--old-cookie", "--apps", "ap2004", "--xml", check=0)
    assert out["status"] == 200
    out = stack.device(SUB3, "--aka-prime", "--apps", "ap2004", check=0)
    assert out["status"] == 200 and out["params"]["Token.token"]


def test_gateway_token_reuse_then_revocation(stack, tmp_path):
    state = tmp_path / "sim"
    first = stack.device(SUB1, "--apps", "ap2004", "--xml", state=state, check=0)
    assert first["auth"] == "full"
    token = first["params"]["Token.token"]
    # no rotation on use: the same token works again and again, and is in every reply
    outs = stack.device(SUB1, "--apps", "ap2004", "--xml", "--count", "3", state=state, check=0)
    for o in outs:
        assert o["auth"] == "token" and o["status"] == 200 and o["challenges"] == 0, o
        assert o["params"]["Token.token"] == token
    # revoke: the next token request gets 511, and the device re-authenticates once
    st, body = stack.admin("DELETE", f"/v1/subscribers/{SUB1}/tokens")
    assert st in (200, 204), body
    st, _, _ = stack.raw("GET", f"/?terminal_id=1&app=ap2004&IMSI={SUB1}&token={token}")
    assert st == 511
    again = stack.device(SUB1, "--apps", "ap2004", "--xml", state=state, check=0)
    assert again["token_retry"] and again["auth"] == "full" and again["status"] == 200
    assert again["params"]["Token.token"] != token


def test_gateway_resync_under_same_cookie(stack, tmp_path):
    # the SIM is ahead of the network: AUTS, then a fresh challenge under the same cookie
    out = stack.device(SUB2, "--sqn", "000000100000", "--apps", "ap2004", check=0)
    assert out["status"] == 200 and out["resyncs"] == 1 and out["challenges"] == 2, out
    assert out["cookies_set"] == 1  # set once, on the first challenge; never changed


def test_gateway_wrong_res_is_403(stack):
    out = stack.device(SUB3, "--wrong-res", "--apps", "ap2004", check=2)
    assert out["status"] == 403 and out["challenges"] == 1


def test_gateway_replayed_and_expired_cookie_are_511(stack):
    out = stack.device(SUB3, "--replay-eap", "--apps", "ap2004", check=0)
    assert out["status"] == 200 and out["replay_status"] == 511, out
    # authd's exchange_ttl is 2 s in this stack
    out = stack.device(SUB3, "--eap-delay-ms", str(int(2600)), "--apps", "ap2004", check=2)
    assert out["status"] == 511, out
    out = stack.device(SUB3, "--no-cookie", "--apps", "ap2004", check=2)
    assert out["status"] == 511, out


def test_gateway_version_negotiation(stack, tmp_path):
    state = tmp_path / "sim"
    stack.device(SUB2, "--apps", "ap2003", state=state, check=0)
    for ver, nested in (("2.0", False), ("7.0", False), ("8.0", True), ("10.0", True),
                        ("12.0", True), ("99.0", True)):
        for fmt in ("--xml", "--post"):
            out = stack.device(SUB2, "--apps", "ap2003,ap2004", "--version", ver, fmt,
                               state=state, check=0)
            doc = out["document"]
            assert ("VoiceOverCellularEntitleInfo" in doc) == nested, (ver, doc)
            assert out["params"]["ap2003.EntitlementStatus"] == "1"
            if nested and fmt == "--post":
                d = json.loads(doc)["ap2003"]["VoiceOverCellularEntitleInfo"]
                assert [x["RATVoiceEntitleInfoDetails"]["AccessType"] for x in d] == ["1", "2"]
            if nested and fmt == "--xml":
                # nothing nested in ap2004, both IRAT spellings for VoNR
                ap2004 = doc.split('value="ap2004"')[1].split("</characteristic>")[0]
                assert "<characteristic" not in ap2004
                assert "NetworkVoiceIRatCapability" in doc and "NetworkVoiceIRATCapablity" in doc


def test_gateway_change_visible_on_next_request(stack, tmp_path):
    state = tmp_path / "sim"
    out = stack.device(SUB2, "--apps", "ap2004", "--xml", state=state, check=0)
    assert out["params"]["ap2004.EntitlementStatus"] == "1"
    out = stack.device(SUB2, "--apps", "ap2004", "--xml", state=state, check=0)  # cached now
    v1 = int(out["params"]["Vers.version"])
    st, body = stack.admin("PATCH", f"/v1/subscribers/{SUB2}", {"overrides": {"vowifi": False}})
    assert st == 200, body
    out = stack.device(SUB2, "--apps", "ap2004", "--xml", state=state, check=0)
    assert out["params"]["ap2004.EntitlementStatus"] == "0", out["document"]
    assert int(out["params"]["Vers.version"]) > v1
    st, body = stack.admin("PATCH", f"/v1/subscribers/{SUB2}", {"overrides": {"vowifi": None}})
    assert st == 200, body
    out = stack.device(SUB2, "--apps", "ap2004", "--xml", state=state, check=0)
    assert out["params"]["ap2004.EntitlementStatus"] == "1"
    st, m = http_get(f"http://127.0.0.1:{stack.ports['gateway']['ops']}/metrics")
    assert re.search(r'entitle_gateway_cache_lookups_total\{cache="decision",result="hit"\} [1-9]', m)
    assert 'entitle_gateway_events_total{kind="subscriber"' in m


def test_gateway_unknown_app_beside_known(stack, tmp_path):
    state = tmp_path / "sim"
    out = stack.device(SUB1, "--apps", "ap2004,ap2999", "--xml", state=state, check=0)
    assert out["params"]["ap2999.EntitlementStatus"] == "2"
    assert out["params"]["ap2004.EntitlementStatus"] == "1"


def test_gateway_authd_down_then_recovery(stack, tmp_path):
    state = tmp_path / "sim"
    out = stack.device(SUB3, "--apps", "ap2004", state=state, check=0)
    token = out["params"]["Token.token"]
    stack.stop("authd")
    try:
        t0 = time.time()
        st, hdrs, _ = stack.raw("GET", "/?terminal_id=1&app=ap2004&EAP_ID=0" + SUB3 +
                                "%40nai.epc.mnc001.mcc001.3gppnetwork.org")
        assert st == 503 and hdrs.get("Retry-After") == "7", (st, hdrs)
        assert time.time() - t0 < 6 * SCALE  # the 3 s deadline at most, never a hang
        out = stack.device(SUB3, "--apps", "ap2004", "--full-auth", check=2)
        assert out["status"] == 503 and out["retry_after"] == "7"
    finally:
        stack.start("authd")
        stack.wait_ready("authd")
    deadline = time.time() + 15 * SCALE
    while time.time() < deadline:
        out = stack.device(SUB3, "--apps", "ap2004", "--full-auth")
        if out["status"] == 200:
            break
        time.sleep(0.3)
    assert out["status"] == 200, out
    st, _, body = stack.raw("GET", f"/?terminal_id=1&app=ap2004&IMSI={SUB3}&token={token}",
                            headers={"Accept": "application/json"})
    assert st == 200 and token in body.decode()


EAP_ID = "EAP_ID=0" + SUB1 + "%40nai.epc.mnc001.mcc001.3gppnetwork.org"
Q = "terminal_id=358240051111110&entitlement_version=2.0&vers=0"
JSON_CT = {"Content-Type": "application/json"}
MALFORMED = [
    # (method, target, body, headers, status)
    ("GET", f"/?{Q}&{EAP_ID}", None, None, 400),                          # no app
    ("GET", f"/?{Q}&app=&{EAP_ID}", None, None, 400),
    ("GET", f"/?{Q}&app=ap20045&{EAP_ID}", None, None, 400),
    ("GET", f"/?{Q}&app=AP2004&{EAP_ID}", None, None, 400),
    ("GET", f"/?{Q}&app=ap2x04&{EAP_ID}", None, None, 400),
    ("GET", f"/?{Q}&app=ap9999&{EAP_ID}", None, None, 400),              # no known AppID
    ("GET", f"/?{Q}&app=ap2004&app=ap2004%3Cx&{EAP_ID}", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&{EAP_ID}&token=abc", None, None, 400),   # two auth methods
    ("GET", f"/?{Q}&app=ap2004&token=abc&temporary_token=abc", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&token=abc&token=abd", None, None, 400),  # duplicate
    ("GET", f"/?{Q}&{Q}&app=ap2004&token=abc", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&token=a%00b", None, None, 400),          # NUL
    ("GET", f"/?{Q}&app=ap2004&token=abc&terminal_model=%C3%28", None, None, 400),  # UTF-8
    ("GET", f"/?{Q}&app=ap2004&token=abc&terminal_vendor=%FF", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&token=abc&terminal_model=%ED%A0%80", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&token=ab%ZZ", None, None, 400),          # bad escape
    ("GET", f"/?{Q}&app=ap2004&token=" + "a" * 3000, None, None, 400),  # overlong
    ("GET", f"/?{Q}&app=ap2004&token=abc&terminal_vendor=" + "v" * 100, None, None, 400),
    ("GET", f"/?terminal_id={'9' * 80}&app=ap2004&token=abc", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&EAP_ID=" + "0" * 300 + "%40x", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&token=abc&entitlement_version=two", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&token=abc&entitlement_version=2", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&token=abc&vers=x1", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&token=abc&IMSI=00101abc", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&token=abc&notif_action=7", None, None, 400),
    ("GET", f"/?{Q}&app=ap2004&token=abc%20def", None, None, 400),      # bad token charset
    ("GET", f"/?{Q}&app=ap2004&EAP_ID=no-at-sign", None, None, 400),
    ("GET", f"/?app=ap2004&token=abc", None, None, 400),                # no terminal_id
    ("GET", f"/?{Q}&app=ap2004&token=abc&operation=Check%20Eligibility", None, None, 400),
    ("PUT", f"/?{Q}&app=ap2004&token=abc", "", None, 405),
    ("DELETE", f"/?{Q}&app=ap2004&token=abc", None, None, 405),
    ("GET", f"/other?{Q}&app=ap2004&token=abc", None, None, 404),
    ("POST", "/", '{"app":"ap2004"}', {"Content-Type": "text/plain"}, 400),  # content type
    ("POST", "/", '{"app":"ap2004"}', {"Content-Type": "application/xml"}, 400),
    ("POST", "/", "", JSON_CT, 400),                                        # empty body
    ("POST", "/", '{"terminal_id":"1","app":"ap2004","token":"abc"', JSON_CT, 400),  # truncated
    ("POST", "/", '{"terminal_id":"1","app":"ap2004","vers":0,"token":"abc"}', JSON_CT, 400),
    ("POST", "/", '{"terminal_id":"1","app":"ap2004","token":"a","token":"b"}', JSON_CT, 400),
    ("POST", "/", '{"terminal_id":"1","app":[],"token":"abc"}', JSON_CT, 400),
    ("POST", "/", '{"terminal_id":"1","app":[2004],"token":"abc"}', JSON_CT, 400),
    ("POST", "/", '{"terminal_id":"1","app":"ap2004","token":"a\\u0000b"}', JSON_CT, 400),
    ("POST", "/", b'{"terminal_id":"1","app":"ap2004","terminal_model":"\xff"}', JSON_CT, 400),
    ("POST", "/", '["ap2004"]', JSON_CT, 400),
    ("POST", "/", '{"eap-relay-packet":"***"}', JSON_CT, 400),               # bad base64
    ("POST", "/", '{"eap-relay-packet":"AgE","app":"ap2004"}', JSON_CT, 400),
    ("POST", "/", '{"eap-relay-packet":"AgEADBcBAAA="}', JSON_CT, 511),      # no cookie
    ("POST", "/", '{"eap-relay-packet":"AgEADBcBAAA="}',
     {"Content-Type": "application/json", "Cookie": "ECSID=AAAA"}, 511),    # bogus ticket
    ("GET", f"/?{Q}&app=ap2004", None, None, 511),                          # no auth method
    ("GET", f"/?{Q}&app=ap2004&IMSI={SUB1}&token=bm90LWEtdG9rZW4", None, None, 511),
]


def test_gateway_malformed_requests_table(stack):
    assert len(MALFORMED) >= 40
    for method, target, body, headers, want in MALFORMED:
        st, hdrs, _ = stack.raw(method, target, body, headers)
        assert st == want, (method, target[:120], body, st)
        assert st != 401 and st != 406
    # still serving, and the refusals show up in the metrics
    out = stack.device(SUB1, "--apps", "ap2004", check=0)
    assert out["status"] == 200
    st, m = http_get(f"http://127.0.0.1:{stack.ports['gateway']['ops']}/metrics")
    assert re.search(r'entitle_gateway_errors_total\{kind="bad_request",reason="duplicate"\} [1-9]', m)
    assert 'entitle_gateway_requests_total{kind="bad_request",status="400"}' in m
    log = stack.log("gateway")
    assert '"event":"gateway.bad_request"' in log and SUB1 not in log


def test_gateway_tls_reload_on_sighup(stack):
    old = ssl.get_server_certificate(("127.0.0.1", stack.device_port))
    stack.make_cert()
    stack.procs["gateway"].send_signal(signal.SIGHUP)
    deadline = time.time() + 10 * SCALE
    new = old
    while time.time() < deadline and new == old:
        time.sleep(0.1)
        new = ssl.get_server_certificate(("127.0.0.1", stack.device_port))
    assert new != old
    assert stack.device(SUB1, "--apps", "ap2004")["status"] == 200
    ctx = ssl.create_default_context(cafile=stack.cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", stack.device_port)) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.version() == "TLSv1.2"


def test_gateway_push_registration_forwarded(stack, tmp_path):
    out = stack.device(SUB1, "--apps", "ap2004", "--xml", "--full-auth", "--terminal-id",
                       "358240051111119", "--notif-token", "fcm-token-abc:123",
                       "--notif-action", "2", check=0)
    assert out["status"] == 200
    deadline = time.time() + 5 * SCALE
    while time.time() < deadline:
        st, body = stack.admin("GET", f"/v1/subscribers/{SUB1}/devices")
        if st == 200 and "358240051111119" in body:
            break
        time.sleep(0.1)
    dev = [d for d in json.loads(body)["items"] if d["terminal_id"] == "358240051111119"][0]
    # policyd shows push tokens masked: prefix and length
    assert dev["push_platform"] == "fcm" and dev["push_token"].startswith("fcm-"), dev
    assert dev["push_token"].endswith("(17)"), dev


def test_gateway_odsa_temporary_token(stack, tmp_path):
    state = tmp_path / "sim"
    stack.device(SUB1, "--apps", "ap2009", "--xml", state=state, check=0)
    out = stack.device(SUB1, "--apps", "ap2009", "--xml", "--operation", "AcquireTemporaryToken",
                       "--operation-targets", "ManageSubscription,AcquireConfiguration",
                       state=state, check=0)
    p = out["params"]
    assert p["ap2009.OperationResult"] == "1" and p["ap2009.TemporaryToken"], p
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p["ap2009.TemporaryTokenExpiry"])
    assert out["document"].count('type="APPLICATION"') == 1  # one APPLICATION per ODSA reply
    temp = p["ap2009.TemporaryToken"]
    # the temporary token works for its AppID and operations only
    ok = stack.device(SUB1, "--apps", "ap2009", "--xml", "--temporary-token", temp,
                      "--operation", "ManageSubscription")
    assert ok["status"] == 200 and ok["params"]["ap2009.OperationResult"] == "103", ok
    bad = stack.device(SUB1, "--apps", "ap2009", "--xml", "--temporary-token", temp,
                       "--operation", "ManageService")
    assert bad["status"] == 403
    # unknown and unsupported ODSA operations travel as 200 + OperationResult
    out = stack.device(SUB1, "--apps", "ap2009", "--xml", "--operation", "Frobnicate",
                       state=state, check=0)
    assert out["params"]["ap2009.OperationResult"] == "101"


def test_gateway_rate_limits_429(stack, tmp_path):
    ops, bus, dev = free_port(), free_port(), free_port()
    text = (stack.tmp / "gateway.yaml").read_text()
    text = text.replace(f"127.0.0.1:{stack.ports['gateway']['ops']}", f"127.0.0.1:{ops}")
    text = text.replace(f"127.0.0.1:{stack.ports['gateway']['bus']}", f"127.0.0.1:{bus}")
    text = text.replace(f"127.0.0.1:{stack.device_port}", f"127.0.0.1:{dev}")
    text = re.sub(r"ratelimit:\n(  .*\n)+", "ratelimit:\n  ip_rate: 1\n  ip_burst: 3\n", text)
    cfg = tmp_path / "gw2.yaml"
    cfg.write_text(text)
    log = open(tmp_path / "gw2.log", "wb")
    p = subprocess.Popen([os.path.join(BUILD, "gateway", "entitle-gateway"), "--config", str(cfg)],
                         stdout=log, stderr=subprocess.STDOUT, env=stack.env)
    try:
        deadline = time.time() + 20 * SCALE
        while http_get(f"http://127.0.0.1:{ops}/readyz", timeout=1)[0] != 200:
            assert time.time() < deadline and p.poll() is None, (tmp_path / "gw2.log").read_text()
            time.sleep(0.1)
        ctx = ssl.create_default_context(cafile=stack.cert)
        statuses, retry = [], None
        for _ in range(6):
            c = http.client.HTTPSConnection("127.0.0.1", dev, context=ctx, timeout=5 * SCALE)
            c.request("GET", f"/?{Q}&app=ap2004")
            r = c.getresponse()
            r.read()
            statuses.append(r.status)
            retry = r.getheader("Retry-After") or retry
            c.close()
        assert statuses[:3] == [511, 511, 511] and 429 in statuses, statuses
        assert retry == "7"
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20 * SCALE) == 0
        log.close()


def test_gateway_interop_checklist(stack, tmp_path):
    """PROTOCOL.md §11 items not covered above, each checked on the wire."""
    import base64
    # 1. challenge: 200, the eap-relay type, an AKA-Challenge, the cookie with its attributes
    st, hdrs, body = stack.raw("GET", f"/?{Q}&app=ap2004&app=ap2003&{EAP_ID}",
                               headers={"Accept": "application/vnd.gsma.eap-relay.v1.0+json"})
    assert st == 200 and hdrs["Content-Type"] == "application/vnd.gsma.eap-relay.v1.0+json"
    pkt = base64.b64decode(json.loads(body)["eap-relay-packet"])
    assert pkt[0] == 1 and pkt[4] == 23 and pkt[5] == 1 and len(pkt) == int.from_bytes(pkt[2:4], "big")
    cookie = hdrs["Set-Cookie"]
    assert re.fullmatch(r"ECSID=[A-Za-z0-9_-]+; Path=/; Secure; HttpOnly", cookie), cookie
    # 4. full document + TOKEN even when vers equals the current version
    state = tmp_path / "sim"
    first = stack.device(SUB2, "--apps", "ap2004,ap2005", "--xml", state=state, check=0)
    v = first["params"]["Vers.version"]
    same = stack.device(SUB2, "--apps", "ap2004,ap2005", "--xml", "--vers", v, state=state,
                        check=0)
    assert same["document"].count('type="APPLICATION"') == 2 and same["params"]["Token.token"]
    # 7. entitlement_version 2.0 and every app encoding, GET and POST
    token = same["params"]["Token.token"]
    base = {"terminal_id": "1", "entitlement_version": "2.0", "vers": "0", "IMSI": SUB2,
            "token": token}
    for app in ("ap2004", ["ap2004", "ap2005"], "[ap2004,ap2005]"):
        for ct in ("application/json", "application/vnd.gsma.eap-relay.v1.0+json"):
            st, hdrs, body = stack.raw("POST", "/", json.dumps(dict(base, app=app)),
                                       {"Content-Type": ct, "Accept": "application/json"})
            assert st == 200 and hdrs["Content-Type"] == "application/json", (app, st, body)
            assert "ap2004" in json.loads(body) and token in body.decode()
    st, hdrs, body = stack.raw(
        "GET", f"/?{Q}&app=ap2004&app=ap2005&IMSI={SUB2}&token={token}",
        headers={"Accept": "application/json, text/vnd.wap.connectivity-xml"})
    assert st == 200 and hdrs["Content-Type"] == "text/vnd.wap.connectivity-xml"


def test_gateway_without_event_link_answers_uncached(stack, tmp_path):
    """A gateway that cannot reach policyd's event publisher (here: pointed at a port nobody
    listens on) must not cache: it could never learn of a change."""
    stack.stop("gateway")
    real_events = stack.events_port
    stack.events_port = free_port()
    try:
        stack.start("gateway")
        stack.wait_ready("gateway")
        ops = f"http://127.0.0.1:{stack.ports['gateway']['ops']}"
        _, ready = http_get(f"{ops}/readyz")
        assert '"caches":"bypassed"' in ready and '"connected":0' in ready, ready
        state = tmp_path / "sim"
        for _ in range(3):
            out = stack.device(SUB1, "--apps", "ap2003", "--xml", state=state, check=0)
            assert out["params"]["ap2003.EntitlementStatus"] == "1", out
        st, body = stack.admin("PATCH", f"/v1/subscribers/{SUB1}", {"overrides": {"volte": False}})
        assert st == 200, body
        out = stack.device(SUB1, "--apps", "ap2003", "--xml", state=state, check=0)
        assert out["params"]["ap2003.EntitlementStatus"] == "0", out["document"]
        _, m = http_get(f"{ops}/metrics")
        assert re.search(r'entitle_gateway_cache_lookups_total\{cache="decision",result="bypass"\} [1-9]', m), m
        assert not re.search(r'entitle_gateway_cache_lookups_total\{cache="decision",result="hit"\}', m), m
        assert "entitle_gateway_cache_trusted 0" in m
        assert 'entitle_gateway_events_publishers{state="expected"} 1' in m
        st, body = stack.admin("PATCH", f"/v1/subscribers/{SUB1}", {"overrides": {"volte": None}})
        assert st == 200, body
    finally:
        stack.stop("gateway")
        stack.events_port = real_events
        stack.start("gateway")
        stack.wait_ready("gateway")
        wait_caches_trusted(stack.ports["gateway"]["ops"])


def test_gateway_policyd_restart_flushes_caches(stack, tmp_path):
    state = tmp_path / "sim"
    stack.device(SUB3, "--apps", "ap2005", "--xml", state=state, check=0)
    stack.device(SUB3, "--apps", "ap2005", "--xml", state=state, check=0)  # cached
    metric = re.compile(r'entitle_gateway_cache_flushes_total\{reason="publisher_connected"\} (\d+)')
    _, m = http_get(f"http://127.0.0.1:{stack.ports['gateway']['ops']}/metrics")
    before = int(metric.search(m).group(1)) if metric.search(m) else 0
    stack.stop("policyd")
    stack.start("policyd")
    stack.wait_ready("policyd")
    # the change happens at once, maybe before the gateway's SUB socket has re-dialled
    st, body = stack.admin("PATCH", f"/v1/subscribers/{SUB3}", {"overrides": {"smsoip": False}})
    assert st == 200, body
    deadline = time.time() + 10 * SCALE
    while time.time() < deadline:
        _, m = http_get(f"http://127.0.0.1:{stack.ports['gateway']['ops']}/metrics")
        if metric.search(m) and int(metric.search(m).group(1)) > before:
            break
        time.sleep(0.05)
    assert metric.search(m) and int(metric.search(m).group(1)) > before, m
    assert re.search(r'entitle_gateway_events_links_total\{change="down"\} [1-9]', m), m
    out = stack.device(SUB3, "--apps", "ap2005", "--xml", state=state, check=0)
    assert out["params"]["ap2005.EntitlementStatus"] == "0"
    wait_caches_trusted(stack.ports["gateway"]["ops"])
