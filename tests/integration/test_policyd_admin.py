# SPDX-License-Identifier: Apache-2.0
"""The real entitle-policyd binary: admin API over TLS with bearer scopes, responses checked
against docs/admin-api.yaml (jsonschema), authd unreachable -> 503/504 with nothing created,
/readyz, and SIGTERM -> exit 0."""
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import jsonschema
import pytest
import yaml

from e2e_support import free_port  # below the ephemeral port range

TOP = os.environ.get("ENTITLE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ENTITLE_BUILD_DIR", os.path.join(TOP, "build"))
SCALE = float(os.environ.get("ENTITLE_TEST_TIMEOUT_MULTIPLIER", "1"))
WRITE = "w" * 32
READ = "r" * 32


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


def test_policyd_device_rules_api(policyd):
    """Device capability rules: CRUD mirroring roaming rules, validation naming the field,
    ETag/If-Match, scopes, and explain for a given terminal."""
    proc, base, ctx, ops = policyd
    err, rule = schema("Error"), schema("DeviceRule")
    st, _, body = req(ctx, base + "/v1/subscribers", "POST",
                      body={"imsi": "001010000000031", "msisdn": "15550000031"})
    assert st == 201, body
    new = {"name": "acme-x9-wifi", "match": {"vendor": "Acme", "model": "X9*", "sw_max": "13.9"},
           "services": {"vowifi": False}, "message": "VoWiFi needs Android 14 on the X9"}
    # A read token cannot write.
    st, _, body = req(ctx, base + "/v1/device-rules", "POST", READ, new)
    assert st == 403
    jsonschema.validate(body, err)
    st, hdr, body = req(ctx, base + "/v1/device-rules", "POST", body=new)
    assert st == 201, body
    jsonschema.validate(body, rule)
    assert hdr["ETag"] == '"1"' and body["match"]["model"] == "X9*"
    # Validation: 422 or 400 naming the field.
    bad = [({"name": "b", "match": {"model": "X9"}}, 422, "match.vendor"),
           ({"name": "b", "match": {"vendor": "Acme", "sw_min": "14.x"}}, 422, "match.sw_min"),
           ({"name": "b", "match": {"vendor": "Acme", "sw_min": "14", "sw_max": "13.1"}}, 422,
            "match.sw_max"),
           ({"name": "b", "match": {"vendor": "Acme", "model": "X*9"}}, 422, "match.model"),
           ({"name": "b", "match": {"vendor": "Acme", "imei": "1"}}, 422, "match.imei"),
           ({"name": "b", "match": {"vendor": "Acme"}, "services": {"wifi": False}}, 422,
            "services.wifi"),
           ({"name": "b", "match": {"vendor": 7}}, 400, "match.vendor"),
           ({"name": "b c", "match": {"vendor": "Acme"}}, 422, "name")]
    for b, code, field in bad:
        st, _, body = req(ctx, base + "/v1/device-rules", "POST", body=b)
        assert (st, body.get("field")) == (code, field), (b, st, body)
        jsonschema.validate(body, err)
    # The same match twice is a conflict; another match is not.
    st, _, body = req(ctx, base + "/v1/device-rules", "POST",
                      body={"name": "dup", "match": {"vendor": "ACME", "model": "x9*",
                                                     "sw_max": "13.9"}})
    assert st == 409 and body["field"] == "match"
    st, _, body = req(ctx, base + "/v1/device-rules", "POST",
                      body={"name": "acme", "match": {"vendor": "Acme"},
                            "services": {"volte": False}, "message": "no VoLTE on Acme"})
    assert st == 201, body
    st, _, body = req(ctx, base + "/v1/device-rules", token=READ)
    assert st == 200 and [r["name"] for r in body["items"]] == ["acme", "acme-x9-wifi"]
    for r in body["items"]:
        jsonschema.validate(r, rule)
    # Device rules do not show up as roaming rules (they share a store collection).
    st, _, body = req(ctx, base + "/v1/roaming-rules", token=READ)
    assert st == 200 and body["items"] == []
    st, _, body = req(ctx, base + "/v1/roaming-rules/acme", token=READ)
    assert st == 404
    # Explain for a terminal: the rule and its message; another model keeps VoWiFi.
    url = base + "/v1/subscribers/001010000000031/explain?app=ap2004&app=ap2003"
    st, _, body = req(ctx, url + "&terminal_vendor=acme&terminal_model=X9%20Pro"
                      "&terminal_sw_version=13.1", token=READ)
    assert st == 200, body
    jsonschema.validate(body, schema("Explain"))
    assert body["terminal"] == {"vendor": "acme", "model": "X9 Pro", "sw_version": "13.1"}
    wifi = [s for s in body["services"] if s["service"] == "vowifi"][0]
    assert wifi["entitlement_status"] == 2 and wifi["step"] == "device"
    assert wifi["rule"] == "acme-x9-wifi"
    assert wifi["params"]["MessageForIncompatible"] == "VoWiFi needs Android 14 on the X9"
    assert any("6 device: rule acme-x9-wifi denies vowifi for acme X9 Pro sw 13.1" in line
               for line in wifi["explain"]), wifi["explain"]
    volte = [s for s in body["services"] if s["service"] == "volte"][0]
    assert volte["entitlement_status"] == 2 and volte["rule"] == "acme"
    st, _, body = req(ctx, url + "&terminal_vendor=Acme&terminal_model=Y1"
                      "&terminal_sw_version=13.1", token=READ)
    wifi = [s for s in body["services"] if s["service"] == "vowifi"][0]
    assert wifi["entitlement_status"] == 1, wifi
    st, _, body = req(ctx, url, token=READ)
    assert "terminal" not in body
    wifi = [s for s in body["services"] if s["service"] == "vowifi"][0]
    assert wifi["entitlement_status"] == 1
    assert any("no terminal_vendor given" in line for line in wifi["explain"])
    st, _, body = req(ctx, url + "&terminal_vendor=" + "a" * 65, token=READ)
    assert st == 422 and body["field"] == "terminal_vendor"
    # PATCH under If-Match: a stale ETag is 412, the current one applies.
    st, hdr, body = req(ctx, base + "/v1/device-rules/acme-x9-wifi", token=READ)
    assert st == 200 and hdr["ETag"] == '"1"'
    st, _, body = req(ctx, base + "/v1/device-rules/acme-x9-wifi", "PATCH",
                      body={"match": {"vendor": "Acme", "model": "X9*", "sw_max": "14"}},
                      headers={"If-Match": '"1"'})
    assert st == 200 and body["version"] == 2, body
    jsonschema.validate(body, rule)
    st, _, body = req(ctx, base + "/v1/device-rules/acme-x9-wifi", "PATCH",
                      body={"services": {"vowifi": None}}, headers={"If-Match": '"1"'})
    assert st == 412
    jsonschema.validate(body, err)
    st, _, body = req(ctx, base + "/v1/device-rules/acme-x9-wifi", "PATCH",
                      body={"name": "other"}, headers={"If-Match": '"2"'})
    assert st == 422 and body["field"] == "name"
    st, _, body = req(ctx, base + "/v1/device-rules/acme-x9-wifi", "PUT",
                      body={"match": {"vendor": "Acme", "model": "X9"},
                            "services": {"vowifi": False}, "message": "m"},
                      headers={"If-Match": '"2"'})
    assert st == 200 and body["name"] == "acme-x9-wifi" and body["match"] == {
        "vendor": "Acme", "model": "X9"}
    # DELETE: read scope refused, stale ETag 412, then gone.
    assert req(ctx, base + "/v1/device-rules/acme-x9-wifi", "DELETE", READ)[0] == 403
    st, _, _ = req(ctx, base + "/v1/device-rules/acme-x9-wifi", "DELETE",
                   headers={"If-Match": '"2"'})
    assert st == 412
    st, _, _ = req(ctx, base + "/v1/device-rules/acme-x9-wifi", "DELETE",
                   headers={"If-Match": '"3"'})
    assert st == 204
    assert req(ctx, base + "/v1/device-rules/acme-x9-wifi", token=READ)[0] == 404
    st, _, body = req(ctx, base + "/v1/device-rules", token=READ)
    assert [r["name"] for r in body["items"]] == ["acme"]
    with urllib.request.urlopen(f"http://127.0.0.1:{ops}/metrics", timeout=3) as r:
        text = r.read().decode()
    assert 'route="/v1/device-rules/{id}"' in text
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20 * SCALE) == 0
