# SPDX-License-Identifier: Apache-2.0
"""./run end to end: start all four daemons with `./run --data <tmp>` on free ports, check
every printed URL's /healthz, /readyz and /metrics, the gateway's pings of its workers, the
0600 secrets, then SIGTERM ./run and expect every daemon to drain and exit 0."""
import json
import os
import re
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from e2e_support import free_port_base  # one copy for every black-box suite

TOP = os.environ.get("ENTITLE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ENTITLE_BUILD_DIR", os.path.join(TOP, "build"))
SCALE = float(os.environ.get("ENTITLE_TEST_TIMEOUT_MULTIPLIER", "1"))


def get(url, timeout=3):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


@pytest.fixture
def running(tmp_path):
    data = tmp_path / "data"
    ops = free_port_base(4)
    bus = free_port_base(5)
    device = free_port_base(1)
    admin = free_port_base(1)
    proc = subprocess.Popen(
        [os.path.join(TOP, "run"), "--data", str(data), "--bin", BUILD, "--no-install",
         "--ops-base", str(ops), "--bus-base", str(bus), "--device-port", str(device),
         "--admin-port", str(admin)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=TOP,
        start_new_session=True)  # ./run and its daemons share one process group
    lines = []
    deadline = time.time() + 60 * SCALE
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip() == "entitle: ready":
            break
    out = "".join(lines)
    if "entitle: ready" not in out:
        stop_group(proc)
        logs = ""
        for f in (data / "log").glob("*.log") if (data / "log").exists() else []:
            logs += f"--- {f.name}\n{f.read_text()[-3000:]}"
        pytest.fail(f"./run did not become ready:\n{out}\n{logs}")
    yield proc, out, data, admin
    stop_group(proc)


def stop_group(proc):
    """Stops ./run the way an operator would (SIGTERM: it drains its daemons), then makes
    sure nothing of its process group survives: a killed ./run would orphan the daemons."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30 * SCALE)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def test_run_serves_every_printed_url(running):
    proc, out, data, admin = running
    urls = sorted(set(re.findall(r"http://127\.0\.0\.1:\d+", out)))
    assert len(urls) == 4, out
    for base in urls:
        status, _, body = get(base + "/healthz")
        assert status == 200 and body.strip() == "ok"
        status, _, body = get(base + "/readyz")
        assert status == 200, body
        ready = json.loads(body)
        assert ready["ready"] is True and ready["store"] == "ok" and ready["bus"] == "bound"
        status, headers, body = get(base + "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert re.search(r'^entitle_build_info\{daemon="\w+",version="[\d.]+"\} 1$', body, re.M), body
        assert "# TYPE entitle_ready gauge" in body
        status, _, _ = get(base + "/nope")
        assert status == 404


def test_gateway_pings_every_worker(running):
    proc, out, data, admin = running
    gw = re.search(r"gateway\s+(http://127\.0\.0\.1:\d+)", out).group(1)
    status, _, body = get(gw + "/readyz")
    assert status == 200, body
    workers = json.loads(body)["workers"]
    for w in ("authd", "policyd", "notifyd"):
        assert workers[w]["configured"] and workers[w]["ok"], body
        assert workers[w]["instance"], body
    _, _, metrics = get(gw + "/metrics")
    for w in ("authd", "policyd", "notifyd"):
        assert f'entitle_gateway_worker_up{{worker="{w}"}} 1' in metrics
        assert re.search(rf'entitle_gateway_worker_ping_seconds_count{{worker="{w}"}} [1-9]', metrics)


def test_run_secrets_are_private(running):
    proc, out, data, admin = running
    names = sorted(os.listdir(data / "secrets"))
    assert any("admin" in n for n in names), names
    for n in ("tls.crt", "tls.key", "kek.hex", "seal.keyring", "admin-tokens"):
        assert n in names
    for n in names:
        mode = stat.S_IMODE(os.stat(data / "secrets" / n).st_mode)
        assert mode == 0o600, (n, oct(mode))


def test_run_stops_cleanly_on_sigterm(running):
    proc, out, data, admin = running
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60 * SCALE)
    assert proc.returncode == 0, rest
    assert "entitle: stopped (status 0)" in rest
    for d in ("gateway", "authd", "policyd", "notifyd"):
        events = [json.loads(l) for l in (data / "log" / f"{d}.log").read_text().splitlines()
                  if l.startswith("{")]
        names = [e["event"] for e in events]
        assert "daemon.drain" in names and "daemon.exit" in names, (d, names)
        assert all(e["daemon"] == d for e in events)


def test_run_provisions_demo_sims(running):
    proc, out, data, admin = running
    assert "(3/3 provisioned)" in out, out
    token = (data / "secrets" / "admin-token").read_text().strip()
    import ssl
    ctx = ssl.create_default_context(cafile=str(data / "secrets" / "tls.crt"))
    req = urllib.request.Request(f"https://127.0.0.1:{admin}/v1/subscribers/001010000000001",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
        sub = json.loads(r.read())
    assert sub["imsi"] == "001010000000001"
    assert "k" not in sub and "opc" not in sub
    # The API refuses a request without the token.
    try:
        urllib.request.urlopen(f"https://127.0.0.1:{admin}/v1/subscribers", context=ctx, timeout=5)
        assert False, "expected 401"
    except urllib.error.HTTPError as e:
        assert e.code == 401
