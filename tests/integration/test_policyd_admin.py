# SPDX-License-Identifier: Apache-2.0
"""The real entitle-policyd binary: admin API over TLS with bearer scopes, responses checked
against docs/admin-api.yaml (jsonschema), authd unreachable -> 503/504 with nothing created,
/readyz, and SIGTERM -> exit 0."""
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import jsonschema
import pytest
import yaml

TOP = os.environ.get("ENTITLE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ENTITLE_BUILD_DIR", os.path.join(TOP, "build"))
SCALE = float(os.environ.get("ENTITLE_TEST_TIMEOUT_MULTIPLIER", "1"))
WRITE = "w" * 32
READ = "r" * 32


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def schema(name):
    doc = yaml.safe_load(open(os.path.join(TOP, "docs", "admin-api.yaml")))
    comps = doc["components"]["schemas"]
    return {"$ref": f"#/components/schemas/{name}", "components": {"schemas": comps}}


@pytest.fixture
def policyd(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-keyout", str(tmp_path / "k.pem"), "-out",
                    str(tmp_path / "c.pem")], check=True, capture_output=True)
    (tmp_path / "tokens").write_text(f"{WRITE} write\n{READ} read\n")
    admin, ops = free_port(), free_port()
    cfg = {
        "ops": {"listen": f"127.0.0.1:{ops}"},
        "bus": {"listen": f"tcp://127.0.0.1:{free_port()}"},
        "store": {"path": str(tmp_path / "e.db")},
        "admin": {"listen": f"127.0.0.1:{admin}", "tls_cert": str(tmp_path / "c.pem"),
                  "tls_key": str(tmp_path / "k.pem"), "tokens_file": str(tmp_path / "tokens")},
        "events": {"listen": f"tcp://127.0.0.1:{free_port()}"},
        # Nothing listens there: authd calls time out.
        "upstream": {"authd": [f"tcp://127.0.0.1:{free_port()}"], "notifyd": [],
                     "timeout": "300ms"},
        "credentials": {"required": False},
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([os.path.join(BUILD, "policyd", "entitle-policyd"), "--config",
                             str(tmp_path / "p.yaml")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 20 * SCALE
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ops}/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    yield proc, f"https://localhost:{admin}", ctx, ops
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20 * SCALE)


def req(ctx, url, method="GET", token=WRITE, body=None, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(r, context=ctx, timeout=10 * SCALE) as resp:
            raw = resp.read().decode()
            return resp.status, resp.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read().decode()
        return e.code, e.headers, json.loads(raw) if raw else None


def test_policyd_admin_api(policyd):
    proc, base, ctx, ops = policyd
    err = schema("Error")
    st, _, body = req(ctx, base + "/v1/subscribers", token=None)
    assert st == 401
    jsonschema.validate(body, err)
    st, _, body = req(ctx, base + "/v1/plans", "POST", READ, {"id": "gold", "services": {}})
    assert st == 403
    st, hdr, body = req(ctx, base + "/v1/subscribers", "POST",
                        body={"imsi": "001010000000001", "msisdn": "15550000001"})
    assert st == 201, body
    jsonschema.validate(body, schema("Subscriber"))
    assert hdr["ETag"] == '"1"'
    st, _, body = req(ctx, base + "/v1/subscribers?limit=10", token=READ)
    assert st == 200
    jsonschema.validate(body, schema("SubscriberList"))
    st, _, body = req(ctx, base + "/v1/subscribers", "POST", body={"imsi": "12"})
    assert st == 422 and body["field"] == "imsi"
    jsonschema.validate(body, err)
    st, _, body = req(ctx, base + "/v1/roaming-rules", "POST",
                      body={"name": "fr", "match": {"mcc": "208"}, "services": {"vowifi": False},
                            "message": "VoWiFi is not available in France"})
    assert st == 201
    jsonschema.validate(body, schema("RoamingRule"))
    st, _, body = req(ctx, base + "/v1/subscribers/001010000000001/location", "PUT",
                      body={"serving_plmn": "20801"}, headers={"If-Match": '"1"'})
    assert st == 200 and body["serving_plmn"] == "20801"
    st, _, body = req(ctx, base + "/v1/subscribers/001010000000001/explain?app=ap2004&app=ap2003",
                      token=READ)
    assert st == 200
    jsonschema.validate(body, schema("Explain"))
    wifi = [s for s in body["services"] if s["service"] == "vowifi"][0]
    assert wifi["entitlement_status"] == 2
    assert wifi["params"]["MessageForIncompatible"] == "VoWiFi is not available in France"
    st, _, body = req(ctx, base + "/v1/plans", token=READ)
    assert st == 200 and any(p["id"] == "default" for p in body["items"])
    # Credentials with authd unreachable: 503/504 and no subscriber.
    st, _, body = req(ctx, base + "/v1/subscribers", "POST",
                      body={"imsi": "001010000000002", "k": "00" * 16, "opc": "11" * 16})
    assert st in (503, 504), body
    jsonschema.validate(body, err)
    assert req(ctx, base + "/v1/subscribers/001010000000002", token=READ)[0] == 404
    with urllib.request.urlopen(f"http://127.0.0.1:{ops}/metrics", timeout=3) as r:
        text = r.read().decode()
    assert "entitle_policyd_api_requests_total" in text
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20 * SCALE) == 0
