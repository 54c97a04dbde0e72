# SPDX-License-Identifier: Apache-2.0
"""entitlectl (tools/entitlectl) against the real stack started by ./run: every admin
command run as a process. Subscribers create (K/OPc from a file and an env variable)/get/
list/patch, an If-Match conflict (exit 1, 412 on stderr), a roaming rule plus a location
change that explain shows as the roaming step, device rules (add/list/update/delete and
explain for a given terminal), token revocation, plans and rollouts, an
NDJSON import with one bad line (exit 1, per-line results), --json output that parses,
exit codes (1 for 401 without a token, 3 for a bad CA file and a closed port, 2 for usage
errors), and the token never appearing in any output. Ends with SIGTERM to ./run, exit 0."""
import json
import os
import signal
import subprocess

import pytest

from e2e_support import RunStack, free_port_base

TOP = os.environ.get("ENTITLE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ENTITLE_BUILD_DIR", os.path.join(TOP, "build"))
SCALE = float(os.environ.get("ENTITLE_TEST_TIMEOUT_MULTIPLIER", "1"))
CTL = os.path.join(BUILD, "tools", "entitlectl")
K = "465b5ce8b199b49faa5f0a2ee238a6bc"  # TS 35.208 test set 1, public
OPC = "cd63cb71954a9f4e48a5994e37a02baf"


class Stack:
    def __init__(self, proc, data, admin):
        self.proc, self.data, self.admin = proc, data, admin
        self.token_file = str(data / "secrets" / "admin-token")
        self.token = open(self.token_file).read().strip()
        self.cacert = str(data / "secrets" / "tls.crt")
        self.outputs = []  # every stdout/stderr, checked for the token at the end

    def ctl(self, *args, env=None, token=True, url=None, cacert=None):
        """Runs entitlectl; returns (exit code, stdout, stderr)."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("ENTITLECTL_")}
        e["ASAN_OPTIONS"] = "detect_leaks=1"
        e.update(env or {})
        pre = ["--url", url or f"https://127.0.0.1:{self.admin}", "--cacert",
               cacert or self.cacert]
        if token:
            pre += ["--token-file", self.token_file]
        r = subprocess.run([CTL] + pre + list(args), capture_output=True, text=True, env=e,
                           timeout=60 * SCALE)
        self.outputs += [r.stdout, r.stderr]
        return r.returncode, r.stdout, r.stderr

    def ok(self, *args, **kw):
        rc, out, err = self.ctl(*args, **kw)
        assert rc == 0, f"entitlectl {args}: exit {rc}\n{out}\n{err}"
        assert "ERROR: AddressSanitizer" not in err and "runtime error" not in err, err
        return out

    def json(self, *args, **kw):
        return json.loads(self.ok("--json", *args, **kw))

    def json_lines(self, *args, **kw):
        return [json.loads(line) for line in self.ok("--json", *args, **kw).splitlines()]


@pytest.fixture
def stack(tmp_path):
    run = RunStack(tmp_path, {})
    run.start()
    try:
        yield Stack(run.proc, run.data, run.admin_port)
    finally:
        run.kill()  # SIGTERM first, so ./run stops its daemons even when the test failed


def test_entitlectl_against_the_stack(stack, tmp_path):
    s = stack
    imsi = "001010000000042"
    kfile = tmp_path / "k.hex"
    kfile.write_text(K + "\n")

    # create: K from a file, OPc from the environment; never echoed back.
    out = s.ok("subscribers", "create", "--imsi", imsi, "--msisdn", "15550000042",
               "--k-file", str(kfile), "--opc-env", "SIM_OPC", env={"SIM_OPC": OPC})
    assert "imsi:" in out and imsi in out and "version:" in out
    assert K not in out and OPC not in out
    sub = s.json("subscribers", "get", imsi)
    assert sub["imsi"] == imsi and sub["version"] == 1 and sub["status"] == "active"
    assert "k" not in sub and "opc" not in sub
    # human get: key: value lines
    out = s.ok("subscribers", "get", imsi)
    assert any(l.startswith("status:") and l.split()[-1] == "active" for l in out.splitlines())

    # list: aligned table (header + demo SIMs + ours), --json one object per line, paging.
    out = s.ok("subscribers", "list")
    rows = out.splitlines()
    assert rows[0].split()[:3] == ["IMSI", "MSISDN", "STATUS"]
    assert any(r.startswith(imsi) for r in rows[1:])
    assert rows[1].index(rows[1].split()[1]) == rows[0].index("MSISDN")  # aligned
    items = s.json_lines("subscribers", "list", "--limit", "2", "--all")
    assert imsi in [i["imsi"] for i in items] and len(items) >= 4
    assert len(s.json_lines("subscribers", "list", "--limit", "2")) == 2

    # patch with the right ETag, then a stale one: 412 on stderr, exit 1.
    sub = s.json("subscribers", "patch", imsi, "--status", "suspended", "--if-match", "1")
    assert sub["status"] == "suspended" and sub["version"] == 2
    rc, out, err = s.ctl("subscribers", "patch", imsi, "--status", "active", "--if-match", "1")
    assert rc == 1 and "412" in err and "precondition_failed" in err, (rc, out, err)
    s.json("subscribers", "patch", imsi, "--status", "active", "--if-match", '"2"')
    # validation error names the field
    rc, _, err = s.ctl("subscribers", "patch", imsi, "--plan", "nope")
    assert rc == 1 and "422" in err and "plan" in err

    # roaming rule, location change, explain shows the roaming step.
    out = s.ok("roaming", "create", "--name", "fr", "--mcc", "208", "--deny", "vowifi",
               "--message", "VoWiFi is not available in France")
    assert "mcc=208" in out
    rules = s.json_lines("roaming", "list")
    assert [r["name"] for r in rules] == ["fr"] and rules[0]["services"]["vowifi"] is False
    out = s.ok("roaming", "list")
    assert out.splitlines()[0].split()[:4] == ["NAME", "MATCH", "ALLOW", "DENY"]
    sub = s.json("subscribers", "location", imsi, "20801")
    assert sub["serving_plmn"] == "20801"
    out = s.ok("explain", imsi, "--app", "ap2004")
    assert "ap2004 vowifi: EntitlementStatus 2, decided by step roaming (rule fr)" in out, out
    assert "4 roaming: visiting 20801, rule fr" in out
    assert "MessageForIncompatible: VoWiFi is not available in France" in out
    ex = s.json("explain", imsi, "--app", "ap2004,ap2003")
    steps = {d["service"]: d["step"] for d in ex["services"]}
    assert steps["vowifi"] == "roaming" and steps["volte"] != "roaming"
    s.ok("subscribers", "location", imsi, "home")
    ex = s.json("explain", imsi, "--app", "ap2004")
    assert ex["services"][0]["entitlement_status"] == 1
    s.ok("roaming", "delete", "fr")
    assert s.json_lines("roaming", "list") == []

    # device rules: add, list, explain for a terminal, update under If-Match, delete.
    out = s.ok("device-rules", "add", "--name", "acme-x9", "--vendor", "Acme", "--model", "X9*",
               "--sw-max", "13.9", "--deny", "vowifi", "--message", "No VoWiFi on the X9")
    assert "vendor=Acme" in out and "model=X9*" in out, out
    out = s.ok("device-rules", "list")
    assert out.splitlines()[0].split()[:4] == ["NAME", "MATCH", "ALLOW", "DENY"]
    assert "acme-x9" in out.splitlines()[1] and "vowifi" in out.splitlines()[1], out
    rules = s.json_lines("device-rules", "list")
    assert [r["name"] for r in rules] == ["acme-x9"]
    assert rules[0]["match"] == {"vendor": "Acme", "model": "X9*", "sw_max": "13.9"}
    out = s.ok("explain", imsi, "--app", "ap2004", "--terminal-vendor", "acme",
               "--terminal-model", "X9 Pro", "--terminal-sw", "13")
    assert "terminal acme X9 Pro sw 13" in out, out
    assert ("ap2004 vowifi: EntitlementStatus 2, decided by step device "
            "(device rule acme-x9)") in out, out
    assert "6 device: rule acme-x9 denies vowifi for acme X9 Pro sw 13" in out
    ex = s.json("explain", imsi, "--app", "ap2004", "--terminal-vendor", "acme",
                "--terminal-model", "X9", "--terminal-sw", "14")
    assert ex["services"][0]["entitlement_status"] == 1
    rc, _, err = s.ctl("device-rules", "update", "acme-x9", "--inherit", "vowifi",
                       "--if-match", "7")
    assert rc == 1 and "412" in err, err
    rule = s.json("device-rules", "update", "acme-x9", "--vendor", "Acme", "--model", "X9",
                  "--allow", "volte", "--if-match", "1")
    assert rule["version"] == 2 and rule["match"] == {"vendor": "Acme", "model": "X9"}
    assert rule["services"] == {"volte": True, "vowifi": False}
    rc, _, err = s.ctl("device-rules", "add", "--name", "bad", "--vendor", "Acme",
                       "--sw-min", "x")
    assert rc == 1 and "422" in err and "match.sw_min" in err, err
    assert s.json("device-rules", "get", "acme-x9")["name"] == "acme-x9"
    assert "deleted device rule acme-x9" in s.ok("device-rules", "delete", "acme-x9")
    assert s.json_lines("device-rules", "list") == []

    # tokens revoke: the generation grows.
    before = s.json("subscribers", "get", imsi)["token_generation"]
    rev = s.json("tokens", "revoke", imsi)
    assert rev["imsi"] == imsi and rev["token_generation"] > before
    assert "token_generation:" in s.ok("tokens", "revoke", imsi)

    # plans and rollouts
    plan = tmp_path / "gold.json"
    plan.write_text(json.dumps({"id": "gold", "name": "Gold", "services": {
        "volte": True, "vowifi": True, "vonr": True}}))
    assert s.json("plans", "create", "--file", str(plan))["id"] == "gold"
    assert {"gold", "default"} <= {p["id"] for p in s.json_lines("plans", "list")}
    assert s.json("plans", "get", "gold")["services"]["vonr"] is True
    s.ok("subscribers", "patch", imsi, "--plan", "gold")
    rc, _, err = s.ctl("plans", "delete", "gold")
    assert rc == 1 and "409" in err  # in use
    s.ok("subscribers", "patch", imsi, "--plan", "")
    assert "deleted plan gold" in s.ok("plans", "delete", "gold")
    ro = s.json("rollouts", "create", "--id", "vonr-pilot", "--service", "vonr",
                "--percentage", "12.5", "--region", "north")
    assert ro["percentage"] == 12.5 and ro["state"] == "active"
    ro = s.json("rollouts", "patch", "vonr-pilot", "--state", "paused", "--if-match",
                str(ro["version"]))
    assert ro["state"] == "paused"
    out = s.ok("rollouts", "list")
    assert "vonr-pilot" in out and "paused" in out
    s.ok("rollouts", "delete", "vonr-pilot")
    rc, _, err = s.ctl("rollouts", "get", "vonr-pilot")
    assert rc == 1 and "404" in err

    # import: one bad line among good ones -> exit 1, a result per line, file line numbers
    # kept across chunks (a tiny --chunk-bytes forces several requests).
    nd = tmp_path / "subs.ndjson"
    good = [{"imsi": f"0010100000007{i:02d}", "msisdn": f"155500007{i:02d}", "k": K,
             "opc": OPC} for i in range(30)]
    lines = [json.dumps(g) for g in good[:20]] + ['{"imsi":"12"}'] + \
        [json.dumps(g) for g in good[20:]]
    nd.write_text("\n".join(lines) + "\n")
    rc, out, err = s.ctl("import", str(nd), "--chunk-bytes", "1024")
    assert rc == 1, (out, err)
    assert "line 21: error 422 imsi" in out, out
    assert sum(1 for l in out.splitlines() if l.startswith("line ")) == 31
    assert "30 created" in out and "1 failed" in out
    rc, out, _ = s.ctl("--json", "import", str(nd))  # idempotent re-import
    assert rc == 1
    res = [json.loads(l) for l in out.splitlines()]
    assert [r["line"] for r in res[:-1]] == list(range(1, 32))
    assert res[20]["result"] == "error" and res[20]["field"] == "imsi"
    assert res[-1]["summary"]["unchanged"] == 30 and res[-1]["summary"]["failed"] == 1
    assert s.json("subscribers", "get", "001010000000729")["msisdn"] == "15550000729"
    ok_file = tmp_path / "ok.ndjson"
    ok_file.write_text(lines[0] + "\n")
    s.ok("import", str(ok_file))

    # delete
    assert "deleted subscriber" in s.ok("subscribers", "delete", imsi)
    rc, _, err = s.ctl("subscribers", "get", imsi)
    assert rc == 1 and "404" in err

    # errors: no token -> 401 (exit 1); bad CA file / closed port -> 3; usage -> 2.
    rc, _, err = s.ctl("subscribers", "list", token=False)
    assert rc == 1 and "401" in err
    rc, _, err = s.ctl("subscribers", "list", token=False, env={"ENTITLECTL_TOKEN": s.token})
    assert rc == 0, err
    bad_ca = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=other", "-keyout", str(tmp_path / "other.key"), "-out",
                    str(bad_ca)], check=True, capture_output=True)
    assert s.ctl("subscribers", "list", cacert=str(bad_ca))[0] == 3
    assert s.ctl("subscribers", "list", cacert=str(tmp_path / "missing.pem"))[0] == 3
    closed = free_port_base(1)
    assert s.ctl("plans", "list", url=f"https://127.0.0.1:{closed}")[0] == 3
    usage = [("subscribers",), ("subscribers", "frob"), ("subscribers", "get"),
             ("explain", imsi), ("subscribers", "create", "--msisdn", "1"),
             ("subscribers", "create", "--imsi", imsi, "--k-file", str(kfile)),
             ("subscribers", "patch", imsi), ("roaming", "create"), ("device-rules", "add"),
             ("device-rules", "update", "x", "--model", "X9"), ("device-rules", "frob"),
             ("plans", "create", "--file", str(tmp_path / "missing.json")),
             ("subscribers", "list", "--limit", "0"), ("import",), ("nope",),
             ("--timeout", "x", "plans", "list"), ("--token", s.token, "plans", "list")]
    for args in usage:
        rc, out, err = s.ctl(*args)
        assert rc == 2, (args, rc, out, err)

    # the token never appears in anything entitlectl printed
    for text in s.outputs:
        assert s.token not in text

    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=60 * SCALE) == 0
