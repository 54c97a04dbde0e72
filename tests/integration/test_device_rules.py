# SPDX-License-Identifier: Apache-2.0
"""Device capability rules end to end (issue #5, DESIGN §2 step 6): the whole stack started by
./run (e2e_support.RunStack, SQLite store) with notifyd's FCM pointed at the suite's fake, one
subscriber with two handsets (entitle-device with different terminal_model values), and a
device rule created through policyd's admin API that denies VoWiFi for one model.

  - the handset of that model gets a push (the rule changed its answer), and its next token
    request shows ap2004 EntitlementStatus 2 with the rule's MessageForIncompatible, VoLTE and
    SMSoIP untouched;
  - the other model of the same subscriber, asking right after (the gateway has just cached
    the first handset's document), still gets EntitlementStatus 1: the decision cache is keyed
    by the terminal too;
  - explain with terminal_* parameters names the rule; deleting the rule restores the answer.
"""
import pytest

from e2e_support import K, OPC, RunStack, app_ids, fcm_stack_env, wait_for

IMSI = "001010000000301"
MSG = "Wi-Fi calling is not supported on the Acme X9 with this software"
APPS = ("--apps", "ap2003,ap2004,ap2005")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("device-rules")
    fcm, env = fcm_stack_env(tmp)
    s = RunStack(tmp, env)
    s.fcm = fcm
    try:
        s.start()
        yield s
    finally:
        if not s.stopped:
            s.kill()
        fcm.close()
    assert not fcm.errors, fcm.errors


def statuses(out):
    return {a: out["params"].get(f"{a}.EntitlementStatus") for a in ("ap2003", "ap2004", "ap2005")}


def test_device_rule_denies_vowifi_for_one_model(stack, tmp_path):
    st, sub, _ = stack.admin("POST", "/v1/subscribers",
                             {"imsi": IMSI, "msisdn": "15550000301", "k": K, "opc": OPC,
                              "sqn": "000000000000", "amf": "8000"})
    assert st == 201, sub
    x9 = ("--terminal-id", "358240051130101", "--vendor", "acme", "--model", "X9",
          "--sw", "13.1")
    y1 = ("--terminal-id", "358240051130102", "--vendor", "acme", "--model", "Y1",
          "--sw", "13.1")
    x9_state, y1_state = tmp_path / "x9", tmp_path / "y1"
    push_token = "e2e-fcm-device-rules-x9:APA91b"

    first = stack.device(IMSI, *APPS, *x9, "--notif-token", push_token, "--notif-action", "2",
                         state=x9_state)
    assert first["status"] == 200 and first["auth"] == "full", first
    assert statuses(first) == {"ap2003": "1", "ap2004": "1", "ap2005": "1"}, first["document"]
    assert statuses(stack.device(IMSI, *APPS, *y1, state=y1_state))["ap2004"] == "1"

    def registered():
        st, body, _ = stack.admin("GET", f"/v1/subscribers/{IMSI}/devices")
        return st == 200 and any(d["terminal_id"] == "358240051130101" and
                                 d.get("push_platform") == "fcm" for d in body["items"])
    wait_for(registered, 15, "the X9 registered with its push token")

    st, rule, hdrs = stack.admin("POST", "/v1/device-rules",
                                 {"name": "acme-x9-no-wifi",
                                  "match": {"vendor": "Acme", "model": "X9*", "sw_max": "13.9"},
                                  "services": {"vowifi": False}, "message": MSG})
    assert st == 201, rule
    assert hdrs.get("ETag") == '"1"'
    # the rule changed the X9's answer: a push names VoWiFi
    msgs = stack.fcm.wait_count(push_token, 1)
    assert app_ids(msgs[0]["app"]) == ["ap2004"], msgs

    x9_out = stack.device(IMSI, *APPS, *x9, state=x9_state)
    assert x9_out["auth"] == "token", x9_out
    assert statuses(x9_out) == {"ap2003": "1", "ap2004": "2", "ap2005": "1"}, x9_out["document"]
    assert x9_out["params"]["ap2004.MessageForIncompatible"] == MSG, x9_out["params"]
    # right after, the same subscriber's other model: not the X9's cached document
    y1_out = stack.device(IMSI, *APPS, *y1, state=y1_state)
    assert statuses(y1_out) == {"ap2003": "1", "ap2004": "1", "ap2005": "1"}, y1_out["document"]
    assert "MessageForIncompatible" not in y1_out["document"]
    # and the X9 again (a cache hit now) still sees its own answer
    again = stack.device(IMSI, *APPS, *x9, state=x9_state)
    assert statuses(again)["ap2004"] == "2"

    st, ex, _ = stack.admin("GET", f"/v1/subscribers/{IMSI}/explain?app=ap2004"
                            "&terminal_vendor=acme&terminal_model=X9&terminal_sw_version=13.1")
    assert st == 200, ex
    svc = ex["services"][0]
    assert svc["entitlement_status"] == 2 and svc["step"] == "device", svc
    assert svc["rule"] == "acme-x9-no-wifi"
    assert any("6 device: rule acme-x9-no-wifi denies vowifi for acme X9 sw 13.1" in line
               for line in svc["explain"]), svc["explain"]
    hits = stack.metric("policyd", "entitle_policyd_rule_hits_total", step="device",
                        rule="acme-x9-no-wifi")
    assert hits >= 1

    # deleting the rule restores the answer (and pushes again)
    st, _, _ = stack.admin("DELETE", "/v1/device-rules/acme-x9-no-wifi",
                           headers={"If-Match": '"1"'})
    assert st == 204
    stack.fcm.wait_count(push_token, 2)
    back = stack.device(IMSI, *APPS, *x9, state=x9_state)
    assert statuses(back) == {"ap2003": "1", "ap2004": "1", "ap2005": "1"}, back["document"]

    assert stack.stop() == 0
