/* SPDX-License-Identifier: Apache-2.0 */
/* policyd's change events → the gateway's caches (DESIGN.md §2 "Decision cache and
 * staleness"). One SUB socket on the main loop dials every configured publisher; each event
 * drops what it makes stale, at once, for every shard (the caches are shared):
 *
 *   CHANGE_SUBSCRIBER      that subscriber's decisions
 *   CHANGE_TOKENS_REVOKED  that subscriber's decisions and cached tokens
 *   CHANGE_ALL             every decision (plans, roaming rules, rollouts)
 *   gap (lost events, publisher restart, (re)connect)  every decision and every token
 *
 * The caches' epoch makes a fill that raced with an event lose (cache.h).
 *
 * Trust: PUB drops what it publishes while we are not connected, and no later event need
 * come to show it. So the caches are used only while every publisher's dialer has a live
 * connection (ent_bus_sub_links()); otherwise they are bypassed — answers are computed by
 * policyd/authd and served, not cached. Each connection that comes up flushes both caches,
 * and so does leaving the bypass. This covers a gateway that starts before policyd, a
 * policyd restart, a network cut, and a new policyd replica found by DNS. */
#include <string.h>

#include "ent/log.h"
#include "ent/metrics.h"
#include "gateway.h"

static ent_counter events_total =
    ENT_COUNTER("entitle_gateway_events_total", "policyd change events received by kind and gap",
                "kind", "gap");
static ent_counter cache_flushes =
    ENT_COUNTER("entitle_gateway_cache_flushes_total",
                "Whole-cache flushes by reason (gap, change_all, publisher_connected)", "reason");
static ent_gauge publishers_gauge = ENT_GAUGE(
    "entitle_gateway_events_publishers",
    "policyd event publishers by state (expected: dialers open, connected: live)", "state");
static ent_gauge cache_trusted_gauge =
    ENT_GAUGE("entitle_gateway_cache_trusted",
              "1 while every event publisher is connected and the caches are used, 0 while "
              "they are bypassed");
static ent_counter link_changes =
    ENT_COUNTER("entitle_gateway_events_links_total",
                "Connections to event publishers that came up or went down", "change");

static const char *kind_name(int kind)
{
    const char *name = ent_bus_change_kind_name(kind);
    return name ? name : "other";
}

void gw_events_apply(struct gw *g, int kind, const char *subscriber_id, bool gap)
{
    atomic_fetch_add(&g->events_seen, 1);
    ent_counter_inc(&events_total, kind_name(kind), gap ? "true" : "false");
    if (gap) {
        size_t nd = gw_cache_flush(&g->decisions);
        size_t nt = gw_cache_flush(&g->tokens);
        ent_counter_inc(&cache_flushes, "gap");
        ENT_LOG_INFO(NULL, "gateway.events_gap_flush", ENT_KV_U64("decisions", nd),
                     ENT_KV_U64("tokens", nt));
    }
    bool has_sub = subscriber_id && subscriber_id[0];
    switch (kind) {
    case ENTITLE__V1__CHANGE_KIND__CHANGE_SUBSCRIBER:
        if (has_sub)
            gw_cache_drop_subject(&g->decisions, subscriber_id);
        else
            gw_cache_flush(&g->decisions);
        break;
    case ENTITLE__V1__CHANGE_KIND__CHANGE_TOKENS_REVOKED:
        if (has_sub) {
            gw_cache_drop_subject(&g->decisions, subscriber_id);
            gw_cache_drop_subject(&g->tokens, subscriber_id);
        } else {
            gw_cache_flush(&g->decisions);
            gw_cache_flush(&g->tokens);
        }
        break;
    case ENTITLE__V1__CHANGE_KIND__CHANGE_ALL:
    default:
        /* An unknown kind from a newer policyd: be safe. */
        gw_cache_flush(&g->decisions);
        ent_counter_inc(&cache_flushes, "change_all");
        break;
    }
}

void gw_events_check_links(struct gw *g)
{
    if (!g->sub_open)
        return;
    size_t up = 0, total = 0;
    ent_bus_sub_links(&g->sub, &up, &total);
    ent_gauge_set(&publishers_gauge, (double)total, "expected");
    ent_gauge_set(&publishers_gauge, (double)up, "connected");
    bool trusted = total > 0 && up == total;
    if (trusted == atomic_load(&g->caches_trusted))
        return;
    /* Leaving the bypass flushes (gw_cache_set_bypass). */
    gw_cache_set_bypass(&g->decisions, !trusted);
    gw_cache_set_bypass(&g->tokens, !trusted);
    atomic_store(&g->caches_trusted, trusted);
    ent_gauge_set(&cache_trusted_gauge, trusted ? 1.0 : 0.0);
    if (trusted)
        ENT_LOG_INFO(NULL, "gateway.cache_trusted", ENT_KV_U64("publishers", total));
    else
        ENT_LOG_WARN(NULL, "gateway.cache_bypassed", ENT_KV_U64("publishers", total),
                     ENT_KV_U64("connected", up),
                     ENT_KV_STR("effect", "every request asks policyd/authd until all are back"));
}

static void on_event(const Entitle__V1__ChangeEvent *ev, bool gap, void *ud)
{
    struct gw *g = ud;
    gw_events_apply(g, ev->kind, ev->subscriber_id, gap);
}

static void on_link(bool up, void *ud)
{
    struct gw *g = ud;
    ent_counter_inc(&link_changes, up ? "up" : "down");
    if (up) {
        /* The publisher dropped whatever it published while this link was missing. */
        size_t nd = gw_cache_flush(&g->decisions);
        size_t nt = gw_cache_flush(&g->tokens);
        ent_counter_inc(&cache_flushes, "publisher_connected");
        ENT_LOG_INFO(NULL, "gateway.events_connect_flush", ENT_KV_U64("decisions", nd),
                     ENT_KV_U64("tokens", nt));
    }
    gw_events_check_links(g);
}

ent_err gw_events_start(struct gw *g)
{
    struct gw_cfg *cfg = g->cfg;
    if (cfg->events_policyd.n == 0) {
        ENT_LOG_WARN(NULL, "gateway.events_off",
                     ENT_KV_STR("effect", "cached decisions live until their TTL"));
        atomic_store(&g->caches_trusted, true);
        ent_gauge_set(&cache_trusted_gauge, 1.0);
        return ENT_OK;
    }
    /* Nothing is connected yet: bypass until every publisher is. */
    gw_cache_set_bypass(&g->decisions, true);
    gw_cache_set_bypass(&g->tokens, true);
    atomic_store(&g->caches_trusted, false);
    ent_gauge_set(&cache_trusted_gauge, 0.0);
    struct ent_bus_tls_cfg tls_storage;
    const struct ent_bus_tls_cfg *tls = ent_daemon_bus_tls(g->daemon, &tls_storage);
    ent_err rc =
        ent_bus_sub_init(&g->sub, &g->daemon->loop, (const char *const *)cfg->events_policyd.items,
                         cfg->events_policyd.n, tls, on_event, g);
    if (rc != ENT_OK) {
        ENT_LOG_ERROR(NULL, "gateway.events_failed", ENT_KV_STR("reason", ent_strerror(rc)));
        return rc;
    }
    ent_bus_sub_on_link(&g->sub, on_link);
    g->sub_open = true;
    gw_events_check_links(g);
    return ENT_OK;
}

static void on_sub_closed(struct ent_bus_sub *s)
{
    (void)s;
}

void gw_events_stop(struct gw *g)
{
    if (g->sub_open) {
        ent_bus_sub_close(&g->sub, on_sub_closed);
        g->sub_open = false;
    }
}
