# SPDX-License-Identifier: Apache-2.0
"""notifyd end to end: the built entitle-notifyd against providers written here, on loopback.

- a fake OAuth token endpoint + FCM HTTP v1 send endpoint (plain HTTP, allowed on loopback)
  that verifies the RS256 assertion's signature and claims, the bearer token and the TS.43
  data payload, and can answer 500, 429 + Retry-After, 404 UNREGISTERED or hang per token;
- an APNs-like HTTP/2 server over TLS (the `h2` package) that verifies the ES256 provider
  token, the apns-* headers and the payload;
- an SMS gateway (HTTP) and a fake policyd speaking NNG REQ/REP (SP over TCP) that records
  the registration removals.

Push requests reach notifyd the way policyd sends them: the `push` RPC over the bus. The bus
framing (SP header, 8-byte length, 4-byte request id) and the few protobuf fields needed are
written out here so the test needs no NNG binding.

Python packages: pytest, cryptography, h2.
"""
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

h2 = pytest.importorskip("h2.connection")
import h2.config  # noqa: E402
import h2.events  # noqa: E402

from e2e_support import b64url_decode, free_port, jwt_parts, wait_for  # noqa: E402

TOP = os.environ.get("ENTITLE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ENTITLE_BUILD_DIR", os.path.join(TOP, "build"))
SCALE = float(os.environ.get("ENTITLE_TEST_TIMEOUT_MULTIPLIER", "1"))
NOTIFYD = os.path.join(BUILD, "notifyd", "entitle-notifyd")
PROJECT = "entitle-test"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


# ---- protobuf, just the fields this test uses ------------------------------------------------

def pb_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field(num, value):
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return pb_varint(num << 3) + pb_varint(value)
    if isinstance(value, str):
        value = value.encode()
    return pb_varint(num << 3 | 2) + pb_varint(len(value)) + value


def pb_decode(buf):
    """{field: [values]}: ints for varints, bytes for length-delimited."""
    out, i = {}, 0
    while i < len(buf):
        key, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
        elif wt == 2:
            n, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            v = buf[i:i + n]
            i += n
        else:
            raise ValueError(f"wire type {wt}")
        out.setdefault(num, []).append(v)
    return out


def push_request(rid, sub, term, apps, token="", action=2, msisdn="", idem=""):
    hdr = pb_field(1, rid) + pb_field(2, int(time.time() * 1000) + int(20000 * SCALE)) + \
        pb_field(3, f"t{rid}") + pb_field(4, "policyd")
    body = pb_field(1, sub) + pb_field(2, term)
    for a in apps:
        body += pb_field(3, a)
    if idem:
        body += pb_field(4, idem)
    if token:
        body += pb_field(5, token)
    if action:
        body += pb_field(6, action)
    if msisdn:
        body += pb_field(7, msisdn)
    return pb_field(1, hdr) + pb_field(40, body)


# ---- NNG SP over TCP ---------------------------------------------------------------------------
SP_REQ, SP_REP = 0x30, 0x31


def sp_handshake(sock, mine, theirs):
    sock.sendall(b"\x00SP\x00" + struct.pack(">H", mine) + b"\x00\x00")
    got = recv_exact(sock, 8)
    assert got[:4] == b"\x00SP\x00" and struct.unpack(">H", got[4:6])[0] == theirs, got


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def sp_send(sock, payload):
    sock.sendall(struct.pack(">Q", len(payload)) + payload)


def sp_recv(sock):
    n = struct.unpack(">Q", recv_exact(sock, 8))[0]
    return recv_exact(sock, n)


class BusClient:
    """A REQ peer: pipelines requests on one connection, matches replies by request id."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30 * SCALE)
        sp_handshake(self.sock, SP_REQ, SP_REP)
        self.next_id = 1

    def call_many(self, bodies):
        ids = []
        for b in bodies:
            rid = self.next_id
            self.next_id += 1
            ids.append(rid)
            sp_send(self.sock, struct.pack(">I", 0x80000000 | rid) + b(rid))
        out = {}
        while len(out) < len(ids):
            msg = sp_recv(self.sock)
            rid = struct.unpack(">I", msg[:4])[0] & 0x7FFFFFFF
            out[rid] = pb_decode(msg[4:])
        return [out[i] for i in ids]

    def push(self, **kw):
        resp = self.call_many([lambda rid: push_request(rid, **kw)])[0]
        status = pb_decode(resp[2][0]) if 2 in resp else {}
        code = status.get(1, [0])[0]
        body = pb_decode(resp[40][0]) if 40 in resp else {}
        return code, {"outbox_id": body.get(1, [0])[0], "coalesced": bool(body.get(2, [0])[0]),
                      "duplicate": bool(body.get(3, [0])[0])}

    def close(self):
        self.sock.close()


class FakePolicyd:
    """A REP peer recording DeviceRegisterRequest (Request field 31) and answering OK."""

    def __init__(self):
        self.port = free_port()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(16)
        self.removals = []
        self.stop = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stop:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            sp_handshake(c, SP_REP, SP_REQ)
            while True:
                msg = sp_recv(c)
                hdr, body = msg[:4], pb_decode(msg[4:])
                rid = pb_decode(body[1][0]).get(1, [0])[0] if 1 in body else 0
                if 31 in body:
                    reg = pb_decode(body[31][0])
                    self.removals.append({k: reg.get(n, [b""])[0].decode() for k, n in
                                          (("subscriber", 1), ("terminal", 2), ("token", 6),
                                           ("action", 7))})
                resp = pb_field(1, rid) + pb_field(2, b"") + pb_field(31, b"")
                sp_send(c, hdr + resp)
        except (ConnectionError, OSError):
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.lsock.close()


# ---- fake FCM + OAuth and SMS gateway (HTTP/1.1) ------------------------------------------------

class Providers:
    def __init__(self, rsa_pub):
        self.rsa_pub = rsa_pub
        self.lock = threading.Lock()
        self.tokens_issued = []
        self.fcm = []         # (registration token, data) accepted with 200
        self.fcm_seen = {}    # registration token -> requests received
        self.sms = []
        self.errors = []
        self.hold = threading.Event()
        self.held = threading.Event()
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, why):
        with self.lock:
            self.errors.append(why)

    def handler(self):
        prov = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body=b"", headers=()):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/token":
                    return self.token(body)
                if self.path == f"/v1/projects/{PROJECT}/messages:send":
                    return self.send_fcm(body)
                if self.path == "/sms":
                    return self.send_sms(body)
                self.reply(404, {"error": "no such path"})

            def token(self, body):
                form = dict(p.split("=", 1) for p in body.decode().split("&"))
                if form.get("grant_type") != "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer":
                    prov.fail(f"grant_type {form.get('grant_type')}")
                    return self.reply(400, {"error": "unsupported_grant_type"})
                hdr, claims, signed, sig = jwt_parts(form["assertion"])
                try:
                    prov.rsa_pub.verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())
                except Exception:
                    prov.fail("bad RS256 signature")
                    return self.reply(400, {"error": "invalid_grant"})
                now = time.time()
                ok = (hdr.get("alg") == "RS256" and hdr.get("kid") == "key-1" and
                      claims.get("iss") == "notifyd@entitle-test.iam.example" and
                      claims.get("aud") == prov.url("/token") and claims.get("scope") == SCOPE and
                      abs(claims["iat"] - now) < 300 and claims["exp"] - claims["iat"] <= 3600)
                if not ok:
                    prov.fail(f"bad claims {hdr} {claims}")
                    return self.reply(400, {"error": "invalid_grant"})
                with prov.lock:
                    tok = f"ya29.test-{len(prov.tokens_issued)}"
                    prov.tokens_issued.append(tok)
                self.reply(200, {"access_token": tok, "expires_in": 3600, "token_type": "Bearer"})

            def send_fcm(self, body):
                auth = self.headers.get("Authorization", "")
                with prov.lock:
                    good = auth.startswith("Bearer ") and auth[7:] in prov.tokens_issued
                if not good:
                    return self.reply(401, {"error": {"status": "UNAUTHENTICATED"}})
                msg = json.loads(body)["message"]
                reg, data = msg["token"], msg["data"]
                if set(data) != {"app", "timestamp"} or not TS_RE.match(data["timestamp"]) or \
                        msg.get("android", {}).get("priority") != "HIGH":
                    prov.fail(f"bad FCM message {msg}")
                    return self.reply(400, {"error": {"status": "INVALID_ARGUMENT"}})
                with prov.lock:
                    n = prov.fcm_seen.get(reg, 0) + 1
                    prov.fcm_seen[reg] = n
                if reg.startswith("e500-") and n == 1:
                    return self.reply(500, {"error": {"status": "INTERNAL"}})
                if reg.startswith("e429-") and n == 1:
                    return self.reply(429, {"error": {"status": "RESOURCE_EXHAUSTED"}},
                                      [("Retry-After", "1")])
                if reg.startswith("always500-"):
                    return self.reply(503, {"error": {"status": "UNAVAILABLE"}})
                if reg.startswith("gone-"):
                    return self.reply(404, {"error": {"status": "NOT_FOUND", "details": [
                        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                         "errorCode": "UNREGISTERED"}]}})
                if reg.startswith("hang-") and n == 1:
                    prov.held.set()
                    prov.hold.wait(60)
                    return
                with prov.lock:
                    prov.fcm.append((reg, data))
                self.reply(200, {"name": f"projects/{PROJECT}/messages/{n}"})

            def send_sms(self, body):
                if self.headers.get("Authorization") != "Bearer sms-secret":
                    prov.fail("sms auth header")
                    return self.reply(401, {})
                with prov.lock:
                    prov.sms.append(json.loads(body))
                self.reply(202, {"id": "sms-1"})

        return H

    def delivered(self, reg):
        with self.lock:
            return [d for r, d in self.fcm if r == reg]

    def close(self):
        self.hold.set()
        self.srv.shutdown()
        self.srv.server_close()


# ---- APNs-like HTTP/2 over TLS -----------------------------------------------------------------

class FakeApns:
    def __init__(self, ec_pub, cert_file, key_file):
        self.ec_pub = ec_pub
        self.delivered = []
        self.errors = []
        self.lock = threading.Lock()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert_file, key_file)
        self.ctx.set_alpn_protocols(["h2"])
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(raw,), daemon=True).start()

    def check(self, headers, body):
        path = headers[":path"]
        token = path.rsplit("/", 1)[-1]
        hdr, claims, signed, sig = jwt_parts(headers["authorization"][len("bearer "):])
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        try:
            self.ec_pub.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
        except Exception:
            return 403, {"reason": "InvalidProviderToken"}
        if hdr != {"alg": "ES256", "kid": "ABC123DEFG"} or claims.get("iss") != "TEAM123456" or \
                abs(claims["iat"] - time.time()) > 3600:
            return 403, {"reason": "InvalidProviderToken"}
        if headers.get("apns-topic") != "org.entitle.test" or \
                headers.get("apns-push-type") != "background" or headers.get("apns-priority") != "5":
            self.errors.append(f"headers {headers}")
            return 400, {"reason": "BadTopic"}
        payload = json.loads(body)
        if payload.get("aps") != {"content-available": 1} or not TS_RE.match(payload["timestamp"]):
            self.errors.append(f"payload {payload}")
            return 400, {"reason": "BadPayload"}
        if not path.startswith("/3/device/"):
            return 404, {"reason": "BadPath"}
        if token.startswith("dead"):
            return 410, {"reason": "Unregistered", "timestamp": int(time.time() * 1000)}
        with self.lock:
            self.delivered.append((token, payload))
        return 200, None

    def serve(self, raw):
        try:
            sock = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        if sock.selected_alpn_protocol() != "h2":
            with self.lock:
                self.errors.append("no h2 via ALPN")
            sock.close()
            return
        with self.lock:
            self.connections += 1
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        streams = {}
        try:
            while True:
                data = sock.recv(65535)
                if not data:
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        streams[ev.stream_id] = [dict(ev.headers), b""]
                    elif isinstance(ev, h2.events.DataReceived):
                        streams[ev.stream_id][1] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        headers, body = streams.pop(ev.stream_id)
                        status, answer = self.check(headers, body)
                        out = [(":status", str(status)), ("apns-id", "00000000-0000-0000-0000-000000000001")]
                        if answer is None:
                            conn.send_headers(ev.stream_id, out, end_stream=True)
                        else:
                            data = json.dumps(answer).encode()
                            conn.send_headers(ev.stream_id, out + [("content-type", "application/json")])
                            conn.send_data(ev.stream_id, data, end_stream=True)
                sock.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            sock.close()

    def close(self):
        self.lsock.close()


# ---- keys and the daemon ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    tls_key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
    (d / "apns.p8").write_text(pkcs8(ec_key))
    (d / "tls.key").write_text(pkcs8(tls_key))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    import datetime
    import ipaddress
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(tls_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(tls_key, hashes.SHA256()))
    (d / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return {"dir": d, "rsa": rsa_key, "ec": ec_key, "pkcs8": pkcs8}


@pytest.fixture
def world(tmp_path, keys):
    prov = Providers(keys["rsa"].public_key())
    apns = FakeApns(keys["ec"].public_key(), str(keys["dir"] / "tls.crt"), str(keys["dir"] / "tls.key"))
    policyd = FakePolicyd()
    sa = {"type": "service_account", "project_id": PROJECT, "private_key_id": "key-1",
          "private_key": keys["pkcs8"](keys["rsa"]), "client_email": "notifyd@entitle-test.iam.example",
          "token_uri": prov.url("/token")}
    (tmp_path / "sa.json").write_text(json.dumps(sa))
    procs = []

    def start(name="a", db=None, extra=None):
        ops, bus = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENTITLE_")}
        env.update({
            "ENTITLE_OPS_LISTEN": f"127.0.0.1:{ops}",
            "ENTITLE_BUS_LISTEN": f"tcp://127.0.0.1:{bus}",
            "ENTITLE_STORE_PATH": str(db or tmp_path / "notifyd.db"),
            "ENTITLE_DAEMON_INSTANCE": f"notifyd-{name}",
            "ENTITLE_LOG_LEVEL": "info",
            "ENTITLE_FCM_PROJECT_ID": PROJECT,
            "ENTITLE_FCM_CREDENTIALS_FILE": str(tmp_path / "sa.json"),
            "ENTITLE_FCM_ENDPOINT": prov.url(),
            "ENTITLE_APNS_ENDPOINT": f"https://127.0.0.1:{apns.port}",
            "ENTITLE_APNS_KEY_FILE": str(keys["dir"] / "apns.p8"),
            "ENTITLE_APNS_KEY_ID": "ABC123DEFG",
            "ENTITLE_APNS_TEAM_ID": "TEAM123456",
            "ENTITLE_APNS_TOPIC": "org.entitle.test",
            "ENTITLE_APNS_CA_FILE": str(keys["dir"] / "tls.crt"),
            "ENTITLE_SMS_ENDPOINT": prov.url("/sms"),
            "ENTITLE_SMS_AUTH_HEADER": "Bearer sms-secret",
            "ENTITLE_NOTIFY_POLICYD": f"tcp://127.0.0.1:{policyd.port}",
            "ENTITLE_NOTIFY_HTTP_TIMEOUT": "2s",
            "ENTITLE_OUTBOX_LEASE": "5s",
            "ENTITLE_OUTBOX_BACKOFF_MIN": "100ms",
            "ENTITLE_OUTBOX_BACKOFF_MAX": "400ms",
            "ENTITLE_OUTBOX_MAX_ATTEMPTS": "3",
            "ENTITLE_OUTBOX_POLL_INTERVAL": "50ms",
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1"),
        })
        env.update(extra or {})
        log = open(tmp_path / f"notifyd-{name}.log", "ab")
        p = subprocess.Popen([NOTIFYD], env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        base = f"http://127.0.0.1:{ops}"

        def ready():
            if p.poll() is not None:
                pytest.fail(f"notifyd exited {p.returncode}: {(tmp_path / f'notifyd-{name}.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=1) as r:
                    return r.status == 200
            except Exception:
                return False
        wait_for(ready, 30, "notifyd /readyz")
        return {"proc": p, "ops": base, "bus": bus, "log": tmp_path / f"notifyd-{name}.log"}

    def stop(d):
        d["proc"].send_signal(signal.SIGTERM)
        rc = d["proc"].wait(timeout=30 * SCALE)
        assert rc == 0, d["log"].read_text()[-3000:]

    w = {"prov": prov, "apns": apns, "policyd": policyd, "start": start, "stop": stop, "tmp": tmp_path}
    yield w
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    prov.close()
    apns.close()
    policyd.close()
    assert not prov.errors, prov.errors
    assert not apns.errors, apns.errors


def metrics(d):
    with urllib.request.urlopen(d["ops"] + "/metrics", timeout=3) as r:
        return r.read().decode()


def metric(d, name, **labels):
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = "^" + re.escape(name + ("{" + sel + "}" if sel else "")) + r" (\S+)$"
    m = re.search(pat, metrics(d), re.M)
    return float(m.group(1)) if m else 0.0


# ---- cases --------------------------------------------------------------------------------------

def test_fcm_delivers_ts43_payload_with_cached_oauth_token(world):
    d = world["start"]()
    bus = BusClient(d["bus"])
    for i in range(3):
        code, r = bus.push(sub=f"00101000000000{i}", term=f"imei-{i}", apps=["ap2004"], token=f"ok-{i}")
        assert code == 0 and r["outbox_id"] > 0
    code, r = bus.push(sub="001010000000009", term="imei-9", apps=["ap2004", "ap2005"], token="ok-multi")
    assert code == 0
    prov = world["prov"]
    wait_for(lambda: all(prov.delivered(f"ok-{i}") for i in range(3)) and prov.delivered("ok-multi"),
             20, "FCM deliveries")
    assert prov.delivered("ok-0")[0]["app"] == "ap2004"
    assert json.loads(prov.delivered("ok-multi")[0]["app"]) == ["ap2004", "ap2005"]
    assert len(prov.tokens_issued) == 1, "access token must be cached across sends"
    wait_for(lambda: metric(d, "entitle_notifyd_deliveries_total", channel="fcm", result="delivered") == 4,
             10, "delivery metric")
    assert metric(d, "entitle_notifyd_delivery_duration_seconds_count", channel="fcm") == 4
    bus.close()
    world["stop"](d)


def test_apns_http2_with_es256_provider_token(world):
    d = world["start"]()
    bus = BusClient(d["bus"])
    tokens = [f"{i:064x}" for i in range(1, 6)]
    for i, t in enumerate(tokens):
        code, _ = bus.push(sub=f"00101000000010{i}", term=f"iphone-{i}", apps=["ap2004"], token=t, action=4)
        assert code == 0
    apns = world["apns"]
    wait_for(lambda: len(apns.delivered) == 5, 20, "APNs deliveries")
    assert sorted(t for t, _ in apns.delivered) == tokens
    assert all(p["app"] == "ap2004" for _, p in apns.delivered)
    assert apns.connections == 1, "the five pushes must share one HTTP/2 connection"
    bus.close()
    world["stop"](d)


def test_retry_on_500_and_429_with_retry_after(world):
    d = world["start"]()
    bus = BusClient(d["bus"])
    t0 = time.time()
    assert bus.push(sub="001010000000201", term="a", apps=["ap2004"], token="e500-a")[0] == 0
    assert bus.push(sub="001010000000202", term="b", apps=["ap2004"], token="e429-b")[0] == 0
    prov = world["prov"]
    wait_for(lambda: prov.delivered("e500-a") and prov.delivered("e429-b"), 20, "retried deliveries")
    # 429 said Retry-After: 1, which is longer than the 100..400 ms backoff: it must win.
    assert time.time() - t0 >= 1.0
    assert prov.fcm_seen["e500-a"] == 2 and prov.fcm_seen["e429-b"] == 2
    assert metric(d, "entitle_notifyd_delivery_failures_total", channel="fcm", reason="http_5xx") == 1
    assert metric(d, "entitle_notifyd_delivery_failures_total", channel="fcm", reason="http_429") == 1
    bus.close()
    world["stop"](d)


def test_dead_letter_after_max_attempts(world):
    d = world["start"]()
    bus = BusClient(d["bus"])
    assert bus.push(sub="001010000000301", term="a", apps=["ap2004"], token="always500-a")[0] == 0
    prov = world["prov"]
    wait_for(lambda: metric(d, "entitle_notifyd_dead_letters_total", reason="http_5xx") == 1, 20, "dead letter")
    assert prov.fcm_seen["always500-a"] == 3  # outbox.max_attempts
    wait_for(lambda: metric(d, "entitle_notifyd_outbox_dead") == 1, 10, "dead gauge")
    assert metric(d, "entitle_notifyd_outbox_pending") == 0
    bus.close()
    world["stop"](d)


def test_invalid_token_removes_registration_and_falls_back_to_sms(world):
    d = world["start"]()
    bus = BusClient(d["bus"])
    assert bus.push(sub="001010000000401", term="imei-401", apps=["ap2004", "ap2005"], token="gone-1",
                    msisdn="+15550000401")[0] == 0
    assert bus.push(sub="001010000000402", term="iphone-402", apps=["ap2004"], token="dead" + "0" * 60,
                    action=4)[0] == 0
    # No push token at all: SMS straight away.
    assert bus.push(sub="001010000000403", term="imei-403", apps=["ap2004"], action=0,
                    msisdn="15550000403")[0] == 0
    pol, prov = world["policyd"], world["prov"]
    wait_for(lambda: len(pol.removals) == 2 and len(prov.sms) == 2, 20, "removals and SMS")
    removed = sorted((r["subscriber"], r["terminal"], r["token"], r["action"]) for r in pol.removals)
    assert removed == [("001010000000401", "imei-401", "", "0"), ("001010000000402", "iphone-402", "", "0")]
    sms = sorted(prov.sms, key=lambda s: s["to"])
    assert sms[0] == {"to": "+15550000401", "port": 8095, "udh_iei": 5,
                      "text": "001010000000401-aescfg,ap2004,ap2005"}
    assert sms[1]["to"] == "15550000403" and sms[1]["text"] == "001010000000403-aescfg,ap2004"
    wait_for(lambda: metric(d, "entitle_notifyd_registrations_removed_total", result="ok") == 2, 10, "metric")
    wait_for(lambda: metric(d, "entitle_notifyd_deliveries_total", channel="sms", result="delivered") == 2,
             10, "SMS metric")
    bus.close()
    world["stop"](d)


def test_bad_requests_are_refused_and_idempotency_and_coalescing(world):
    d = world["start"](extra={"ENTITLE_OUTBOX_POLL_INTERVAL": "60s"})
    bus = BusClient(d["bus"])
    assert bus.push(sub="", term="x", apps=["ap2004"], token="t")[0] == 1  # EINVAL
    assert bus.push(sub="001010000000501", term="x", apps=[], token="t")[0] == 1
    assert bus.push(sub="001010000000501", term="x", apps=["ap2004"], action=2)[0] == 1  # no route
    code, a = bus.push(sub="001010000000501", term="x", apps=["ap2004"], token="ok-idem", idem="k1")
    assert code == 0 and not a["duplicate"]
    code, b = bus.push(sub="001010000000501", term="x", apps=["ap2004"], token="ok-idem", idem="k1")
    assert code == 0 and b["duplicate"] and b["outbox_id"] == a["outbox_id"]
    assert metric(d, "entitle_notifyd_push_requests_total", result="invalid") == 3
    world["stop"](d)

    # Coalescing: with the one delivery slot held by a hanging send, a device's pushes stay
    # pending (not leased), and new ones for the same device and AppIDs replace the pending
    # row instead of adding rows.
    db = world["tmp"] / "coalesce.db"
    d = world["start"]("b", db=db, extra={"ENTITLE_OUTBOX_CONCURRENCY": "1"})
    bus = BusClient(d["bus"])
    prov = world["prov"]
    prov.hold.clear()
    prov.held.clear()
    assert bus.push(sub="001010000000503", term="h", apps=["ap2004"], token="hang-co")[0] == 0
    wait_for(prov.held.is_set, 10, "the slot to be taken")
    code, first = bus.push(sub="001010000000502", term="y", apps=["ap2004"], token="ok-co")
    assert code == 0 and not first["coalesced"]
    for _ in range(3):
        code, r = bus.push(sub="001010000000502", term="y", apps=["ap2004"], token="ok-co")
        assert code == 0 and r["coalesced"] and r["outbox_id"] == first["outbox_id"], r
    # Other AppIDs are another row: coalescing must not lose a changed service.
    code, other = bus.push(sub="001010000000502", term="y", apps=["ap2005"], token="ok-other")
    assert code == 0 and not other["coalesced"]
    prov.hold.set()
    wait_for(lambda: prov.delivered("ok-co") and prov.delivered("ok-other") and prov.delivered("hang-co"),
             20, "deliveries after the slot frees")
    time.sleep(0.5)
    assert prov.fcm_seen["ok-co"] == 1
    bus.close()
    world["stop"](d)


def test_kill_9_mid_delivery_is_redelivered_after_the_lease(world):
    db = world["tmp"] / "crash.db"
    a = world["start"]("a", db=db)
    bus = BusClient(a["bus"])
    prov = world["prov"]
    prov.hold.clear()
    prov.held.clear()
    assert bus.push(sub="001010000000601", term="z", apps=["ap2004"], token="hang-1")[0] == 0
    wait_for(prov.held.is_set, 20, "the send to reach FCM")
    a["proc"].send_signal(signal.SIGKILL)
    a["proc"].wait()
    bus.close()
    prov.hold.set()
    t_killed = time.time()
    b = world["start"]("b", db=db)
    wait_for(lambda: prov.delivered("hang-1"), 30, "redelivery after the lease")
    assert time.time() - t_killed >= 2.0  # not before the lease (5 s from the claim) ran out
    assert prov.fcm_seen["hang-1"] == 2
    world["stop"](b)


def test_two_replicas_share_the_outbox_without_duplicates(world):
    n = int(os.environ.get("ENTITLE_NOTIFYD_PUSHES", "10000"))
    db = world["tmp"] / "replicas.db"
    # Loopback FCM here is HTTP/1.1 (one request per connection at a time), so in-flight
    # deliveries are capped near the connection count; otherwise they would queue inside
    # curl past the request deadline, time out after the fake accepted them, and be sent
    # again (at-least-once, but not the normal case this test is about).
    extra = {"ENTITLE_OUTBOX_LEASE": "60s", "ENTITLE_OUTBOX_POLL_INTERVAL": "100ms",
             "ENTITLE_NOTIFY_HTTP_TIMEOUT": "20s", "ENTITLE_NOTIFY_MAX_HOST_CONNECTIONS": "8",
             "ENTITLE_OUTBOX_CONCURRENCY": "16"}
    a = world["start"]("a", db=db, extra=extra)
    b = world["start"]("b", db=db, extra=extra)
    ca, cb = BusClient(a["bus"]), BusClient(b["bus"])
    t0 = time.time()
    for start in range(0, n, 200):
        batch = range(start, min(n, start + 200))
        mk = lambda rid, i: push_request(rid, f"0010100{i:08d}", f"dev-{i}", ["ap2004"], token=f"rep-{i}")
        half = [lambda rid, i=i: mk(rid, i) for i in batch if i % 2 == 0]
        other = [lambda rid, i=i: mk(rid, i) for i in batch if i % 2 == 1]
        for r in ca.call_many(half) + cb.call_many(other):
            assert 40 in r, r
    t_enq = time.time() - t0
    prov = world["prov"]

    def done():
        with prov.lock:
            return len({r for r, _ in prov.fcm if r.startswith("rep-")}) == n
    wait_for(done, 240, f"{n} deliveries")
    t_all = time.time() - t0
    time.sleep(1.0)
    with prov.lock:
        counts = {}
        for r, _ in prov.fcm:
            if r.startswith("rep-"):
                counts[r] = counts.get(r, 0) + 1
    dups = sum(c - 1 for c in counts.values())
    by_a = metric(a, "entitle_notifyd_deliveries_total", channel="fcm", result="delivered")
    by_b = metric(b, "entitle_notifyd_deliveries_total", channel="fcm", result="delivered")
    print(f"\nnotifyd replicas: {n} pushes queued in {t_enq:.1f}s, all delivered in {t_all:.1f}s "
          f"({n / t_all:.0f}/s); replica a {by_a:.0f}, b {by_b:.0f}; duplicates {dups}")
    assert dups == 0
    assert by_a + by_b == n and by_a > 0 and by_b > 0
    ca.close()
    cb.close()
    world["stop"](a)
    world["stop"](b)
