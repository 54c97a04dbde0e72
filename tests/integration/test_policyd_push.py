# SPDX-License-Identifier: Apache-2.0
"""policyd never loses an acknowledged push (issue #5): the real entitle-policyd and
entitle-notifyd on 127.0.0.1, both on one SQLite store (as ./run configures them), with the
fake Google OAuth + FCM server from e2e_support. With notifyd stopped, a location change of a
subscriber with a registered FCM device is acknowledged (200) and its push intent waits in
policyd's queue; policyd is restarted with the intent still queued; notifyd is started and
the FCM fake receives the push. Every process is reaped; SIGTERM must give exit status 0.
Python packages: pytest, cryptography."""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import urllib.error
import urllib.request

import pytest

from e2e_support import (BUILD, SCALE, FakeFcm, app_ids, free_port, parse_metrics, wait_for,
                         write_service_account)

POLICYD = os.path.join(BUILD, "policyd", "entitle-policyd")
NOTIFYD = os.path.join(BUILD, "notifyd", "entitle-notifyd")
WRITE = "w" * 32
IMSI = "001010000000077"
TOKEN = "fcm-registration-77"


# ---- just enough protobuf and NNG SP (REQ over TCP) to register a device -----------------------

def pb_varint(v):
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def pb_bytes(num, value):
    value = value.encode() if isinstance(value, str) else value
    return pb_varint(num << 3 | 2) + pb_varint(len(value)) + value


def pb_uint(num, value):
    return pb_varint(num << 3) + pb_varint(value)


def pb_fields(buf):
    """{field: [values]}: ints for varints, bytes for length-delimited (enough for Response)."""
    out, i = {}, 0

    def varint():
        nonlocal i
        v, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v
    while i < len(buf):
        key = varint()
        if key & 7 == 0:
            v = varint()
        elif key & 7 == 2:
            n = varint()
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"wire type {key & 7}")
        out.setdefault(key >> 3, []).append(v)
    return out


def bus_call(port, body_field, body, rid=1):
    """One request to a REP peer (NNG SP over TCP); returns the Status code (0 = OK)."""
    import time
    hdr = (pb_uint(1, rid) + pb_uint(2, int(time.time() * 1000) + int(10000 * SCALE)) +
           pb_bytes(3, f"push-test-{rid}") + pb_bytes(4, "gateway"))
    msg = pb_bytes(1, hdr) + pb_bytes(body_field, body)
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SCALE) as s:
        s.sendall(b"\x00SP\x00" + struct.pack(">H", 0x30) + b"\x00\x00")  # REQ, expecting REP
        got = recv_exact(s, 8)
        assert got[:4] == b"\x00SP\x00" and struct.unpack(">H", got[4:6])[0] == 0x31, got
        payload = struct.pack(">I", 0x80000000 | rid) + msg
        s.sendall(struct.pack(">Q", len(payload)) + payload)
        reply = recv_exact(s, struct.unpack(">Q", recv_exact(s, 8))[0])
    resp = pb_fields(reply[4:])
    status = pb_fields(resp[2][0]) if 2 in resp else {}
    return status.get(1, [0])[0]


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


# ---- the two daemons ------------------------------------------------------------------------------

class Daemon:
    def __init__(self, name, binary, env, log):
        self.name, self.binary, self.env, self.log_path = name, binary, env, log
        self.proc = None
        self.ops = env["ENTITLE_OPS_LISTEN"]

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.ops}/readyz", timeout=1) as r:
                    return r.status == 200
            except (OSError, urllib.error.URLError):
                return False
        wait_for(ready, 20, f"{self.name} /readyz")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20 * SCALE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{self.name} did not stop on SIGTERM:\n{self.tail()}")
        self.log.close()
        assert rc == 0, f"{self.name} exited {rc}:\n{self.tail()}"

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and not self.log.closed:
            self.log.close()

    def tail(self):
        with open(self.log_path, "rb") as f:
            return f.read()[-4000:].decode(errors="replace")

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.ops}/metrics", timeout=3) as r:
            return parse_metrics(r.read().decode())

    def metric(self, name, **labels):
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)


def base_env(tmp, name):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTITLE_")}
    env.update({
        "ENTITLE_OPS_LISTEN": f"127.0.0.1:{free_port()}",
        "ENTITLE_STORE_PATH": str(tmp / "entitle.db"),  # one store for both, as ./run does
        "ENTITLE_DAEMON_INSTANCE": name,
        "ENTITLE_LOG_LEVEL": "info",
        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1"),
    })
    return env


@pytest.fixture
def stack(tmp_path):
    fcm = FakeFcm(None)
    # The fake checks notifyd's OAuth assertions against the key's public half.
    fcm.rsa_pub = write_service_account(tmp_path / "sa.json", fcm).public_key()
    (tmp_path / "tokens").write_text(f"{WRITE} write\n")
    admin, pd_bus, nd_bus = free_port(), free_port(), free_port()
    penv = base_env(tmp_path, "policyd-a")
    penv.update({
        "ENTITLE_BUS_LISTEN": f"tcp://127.0.0.1:{pd_bus}",
        "ENTITLE_ADMIN_LISTEN": f"127.0.0.1:{admin}",
        "ENTITLE_ADMIN_TLS": "false",
        "ENTITLE_ADMIN_TOKENS_FILE": str(tmp_path / "tokens"),
        "ENTITLE_EVENTS_LISTEN": f"tcp://127.0.0.1:{free_port()}",
        "ENTITLE_UPSTREAM_AUTHD": f"tcp://127.0.0.1:{free_port()}",  # never called here
        "ENTITLE_UPSTREAM_NOTIFYD": f"tcp://127.0.0.1:{nd_bus}",
        "ENTITLE_UPSTREAM_TIMEOUT": "500ms",
        "ENTITLE_CREDENTIALS_REQUIRED": "false",
        "ENTITLE_PUSH_BACKOFF_MIN": "100ms",
        "ENTITLE_PUSH_BACKOFF_MAX": "400ms",
        "ENTITLE_PUSH_POLL_INTERVAL": "100ms",
        "ENTITLE_PUSH_LEASE": "2s",
    })
    nenv = base_env(tmp_path, "notifyd-a")
    nenv.update({
        "ENTITLE_BUS_LISTEN": f"tcp://127.0.0.1:{nd_bus}",
        "ENTITLE_FCM_PROJECT_ID": "entitle-e2e",
        "ENTITLE_FCM_CREDENTIALS_FILE": str(tmp_path / "sa.json"),
        "ENTITLE_FCM_ENDPOINT": fcm.url(),
        "ENTITLE_NOTIFY_POLICYD": f"tcp://127.0.0.1:{pd_bus}",
        "ENTITLE_NOTIFY_HTTP_TIMEOUT": "2s",
        "ENTITLE_OUTBOX_POLL_INTERVAL": "100ms",
        "ENTITLE_OUTBOX_BACKOFF_MIN": "100ms",
        "ENTITLE_OUTBOX_BACKOFF_MAX": "400ms",
    })
    policyd = Daemon("policyd", POLICYD, penv, tmp_path / "policyd.log")
    notifyd = Daemon("notifyd", NOTIFYD, nenv, tmp_path / "notifyd.log")
    w = {"fcm": fcm, "policyd": policyd, "notifyd": notifyd, "admin": f"http://127.0.0.1:{admin}",
         "pd_bus": pd_bus, "tmp": tmp_path}
    try:
        yield w
    finally:
        policyd.kill()
        notifyd.kill()
        fcm.close()
    assert not fcm.errors, fcm.errors


def admin(w, method, path, body=None):
    r = urllib.request.Request(w["admin"] + path, method=method,
                               data=json.dumps(body).encode() if body is not None else None,
                               headers={"Authorization": f"Bearer {WRITE}",
                                        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=10 * SCALE) as resp:
            raw = resp.read().decode()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read().decode()
        return e.code, json.loads(raw) if raw else None


def test_location_change_push_survives_notifyd_down_and_policyd_restart(stack):
    pd, nd, fcm = stack["policyd"], stack["notifyd"], stack["fcm"]
    pd.start()
    st, body = admin(stack, "POST", "/v1/roaming-rules",
                     {"name": "fr", "match": {"mcc": "208"}, "services": {"vowifi": False},
                      "message": "VoWiFi is not available in France"})
    assert st == 201, body
    st, body = admin(stack, "POST", "/v1/subscribers", {"imsi": IMSI, "msisdn": "15550000077"})
    assert st == 201, body
    device = (pb_bytes(1, IMSI) + pb_bytes(2, "imei-77") + pb_bytes(6, TOKEN) +
              pb_bytes(7, "2"))  # DeviceRegisterRequest, notif_action 2: FCM
    assert bus_call(stack["pd_bus"], 31, device) == 0

    # notifyd is down: the change is still acknowledged, and its push waits in the queue.
    st, body = admin(stack, "PUT", f"/v1/subscribers/{IMSI}/location", {"serving_plmn": "20801"})
    assert st == 200, body
    assert pd.metric("entitle_policyd_pushes_total", result="queued") == 1
    wait_for(lambda: pd.metric("entitle_policyd_push_retries_total", reason="ETIMEDOUT") >= 1, 20,
             "a failed handoff to the absent notifyd")
    wait_for(lambda: pd.metric("entitle_policyd_push_queue_pending") == 1, 20,
             "the pending gauge showing the intent")
    assert pd.metric("entitle_policyd_push_handoffs_total", result="queued") == 0

    # policyd restarts with the intent queued (and notifyd still down).
    pd.stop()
    pd.start()
    wait_for(lambda: pd.metric("entitle_policyd_push_queue_pending") == 1, 20,
             "the intent still queued after the restart")
    assert fcm.sent_to(TOKEN) == []

    # notifyd comes back: the relay hands the intent over, notifyd sends it through FCM.
    nd.start()
    msgs = fcm.wait_count(TOKEN, 1, timeout=30)
    assert "ap2004" in app_ids(msgs[0]["app"])
    wait_for(lambda: pd.metric("entitle_policyd_push_handoffs_total", result="queued") >= 1, 20,
             "the handoff counted")
    wait_for(lambda: pd.metric("entitle_policyd_push_queue_pending") == 0, 20,
             "the queue drained")
    assert pd.metric("entitle_policyd_push_queue_dead") == 0
    pd.stop()
    nd.stop()
    # One intent, one idempotency key: however often it was resent, one push went out.
    assert len(fcm.sent_to(TOKEN)) == 1
    # Never an unmasked IMSI in policyd's log.
    assert not re.search(IMSI, (stack["tmp"] / "policyd.log").read_text(errors="replace"))
