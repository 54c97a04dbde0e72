/* SPDX-License-Identifier: Apache-2.0 */
/* EAP-AKA / EAP-AKA' packet codec, AT_MAC, permanent identities and the RFC 4187 key
 * hierarchy (see aka/eap_aka.h). Parsing walks attributes with explicit bounds on every read;
 * every non-skippable attribute (type < 128) must be one this message may carry, with its
 * exact length, at most once (AT_KDF excepted: a server may offer several). */
#include "aka/eap_aka.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "aka/kdf_int.h"
#include "ent/util.h"

/* ---- small helpers ------------------------------------------------------------------- */

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static bool type_ok(uint8_t type)
{
    return type == ENT_EAP_TYPE_AKA || type == ENT_EAP_TYPE_AKA_PRIME;
}

/* The AT_MAC hash and key length for a method type. */
static bool mac_alg(uint8_t type, size_t k_aut_len, const char **digest)
{
    if (type == ENT_EAP_TYPE_AKA && k_aut_len == ENT_EAP_AKA_K_AUT_LEN) {
        *digest = "SHA1";
        return true;
    }
    if (type == ENT_EAP_TYPE_AKA_PRIME && k_aut_len == ENT_EAP_AKA_PRIME_K_AUT_LEN) {
        *digest = "SHA256";
        return true;
    }
    return false;
}

/* HMAC over pkt with the 16 bytes at mac_off read as zero, truncated to 16 bytes. */
static ent_err mac_compute(uint8_t mac[ENT_EAP_AKA_MAC_LEN], const uint8_t *pkt, size_t len,
                           size_t mac_off, const uint8_t *k_aut, size_t k_aut_len)
{
    static const uint8_t zero[ENT_EAP_AKA_MAC_LEN];
    uint8_t full[ENT_AKA__SHA256_LEN];
    const char *digest;
    struct ent_aka__iov iov[3];
    ent_err rc;

    if (len < ENT_EAP_AKA_HDR_LEN || mac_off < ENT_EAP_AKA_HDR_LEN ||
        mac_off > len - ENT_EAP_AKA_MAC_LEN || k_aut == NULL ||
        !mac_alg(pkt[4], k_aut_len, &digest))
        return ENT_EINVAL;
    iov[0] = (struct ent_aka__iov){pkt, mac_off};
    iov[1] = (struct ent_aka__iov){zero, sizeof(zero)};
    iov[2] = (struct ent_aka__iov){pkt + mac_off + ENT_EAP_AKA_MAC_LEN,
                                   len - mac_off - ENT_EAP_AKA_MAC_LEN};
    rc = ent_aka__hmac(digest, k_aut, k_aut_len, iov, 3, full);
    if (rc == ENT_OK)
        memcpy(mac, full, ENT_EAP_AKA_MAC_LEN);
    OPENSSL_cleanse(full, sizeof(full));
    return rc;
}

/* ---- writer -------------------------------------------------------------------------- */

struct wbuf {
    uint8_t *p;
    size_t cap;
    size_t len;
    bool overflow;
};

static uint8_t *w_take(struct wbuf *w, size_t n)
{
    uint8_t *at;

    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return NULL;
    }
    at = w->p + w->len;
    w->len += n;
    return at;
}

static void w_header(struct wbuf *w, uint8_t code, uint8_t id, uint8_t type, uint8_t subtype)
{
    uint8_t *h = w_take(w, ENT_EAP_AKA_HDR_LEN);

    if (h == NULL)
        return;
    h[0] = code;
    h[1] = id;
    h[2] = h[3] = 0; /* length: patched by w_finish() */
    h[4] = type;
    h[5] = subtype;
    h[6] = h[7] = 0;
}

/* Attribute whose `vlen` value bytes follow type and length directly (AT_AUTS), zero-padded
 * to a multiple of 4. Returns a pointer to the value area, or NULL on overflow. */
static uint8_t *w_attr_raw(struct wbuf *w, uint8_t type, const void *v, size_t vlen)
{
    size_t total = (2 + vlen + 3) & ~(size_t)3;
    uint8_t *a;

    if (total / 4 > 255) {
        w->overflow = true;
        return NULL;
    }
    a = w_take(w, total);
    if (a == NULL)
        return NULL;
    memset(a, 0, total);
    a[0] = type;
    a[1] = (uint8_t)(total / 4);
    if (vlen > 0 && v != NULL)
        memcpy(a + 2, v, vlen);
    return a + 2;
}

/* The common layout: a 2-byte field (reserved, a length or a value) after type and length,
 * then `vlen` value bytes (v may be NULL for zeros). Returns the offset of the value in the
 * packet, or 0 on overflow. */
static size_t w_attr(struct wbuf *w, uint8_t type, uint16_t field, const void *v, size_t vlen)
{
    uint8_t *a = w_attr_raw(w, type, NULL, 2 + vlen);

    if (a == NULL)
        return 0;
    put_be16(a, field);
    if (vlen > 0 && v != NULL)
        memcpy(a + 2, v, vlen);
    return (size_t)(a - w->p) + 2;
}

/* Patches the length, appends nothing. ENT_ETOOBIG on overflow. */
static ent_err w_finish(struct wbuf *w, size_t *out_len)
{
    if (w->overflow)
        return ENT_ETOOBIG;
    if (w->len > 0xffff)
        return ENT_ETOOBIG;
    put_be16(w->p + 2, (uint16_t)w->len);
    *out_len = w->len;
    return ENT_OK;
}

/* ---- reader -------------------------------------------------------------------------- */

struct attr {
    uint8_t type;
    size_t off;  /* offset of the attribute (its type byte) in the packet */
    size_t size; /* whole attribute, bytes */
    const uint8_t *p;
};

/* Next attribute at *off, or false at the end. ENT_EINVAL for a zero length or an attribute
 * running past the packet. */
static ent_err attr_next(const uint8_t *pkt, size_t len, size_t *off, struct attr *a, bool *more)
{
    size_t size;

    if (*off == len) {
        *more = false;
        return ENT_OK;
    }
    if (len - *off < 4)
        return ENT_EINVAL; /* RFC 4187 §8.1: every attribute is at least 4 bytes */
    size = (size_t)pkt[*off + 1] * 4;
    if (size == 0 || size > len - *off)
        return ENT_EINVAL;
    a->type = pkt[*off];
    a->off = *off;
    a->size = size;
    a->p = pkt + *off;
    *off += size;
    *more = true;
    return ENT_OK;
}

ent_err ent_eap_aka_peek(struct ent_eap_aka_hdr *out, const uint8_t *pkt, size_t len)
{
    if (out == NULL || pkt == NULL || len < ENT_EAP_AKA_HDR_LEN || len > 0xffff)
        return ENT_EINVAL;
    if (get_be16(pkt + 2) != len)
        return ENT_EINVAL;
    if (pkt[0] != ENT_EAP_CODE_REQUEST && pkt[0] != ENT_EAP_CODE_RESPONSE)
        return ENT_EINVAL;
    if (!type_ok(pkt[4]))
        return ENT_EINVAL;
    out->code = pkt[0];
    out->identifier = pkt[1];
    out->length = (uint16_t)len;
    out->type = pkt[4];
    out->subtype = pkt[5];
    return ENT_OK;
}

/* ---- challenge (server builds, peer parses) ------------------------------------------- */

ent_err ent_eap_aka_challenge_build(uint8_t *out, size_t cap, size_t *out_len,
                                    const struct ent_eap_aka_challenge *c, const uint8_t *k_aut,
                                    size_t k_aut_len)
{
    struct wbuf w = {.p = out, .cap = cap};
    uint8_t mac[ENT_EAP_AKA_MAC_LEN];
    const char *digest;
    size_t mac_off, len;
    ent_err rc;

    if (out == NULL || out_len == NULL || c == NULL || k_aut == NULL ||
        !mac_alg(c->type, k_aut_len, &digest))
        return ENT_EINVAL;
    /* TS 33.402 §6.2: an AKA' vector must carry the AMF separation bit (AUTN[6]) */
    if (c->type == ENT_EAP_TYPE_AKA_PRIME &&
        (c->kdf != ENT_EAP_AKA_KDF_CK_IK_PRIME || c->network_name_len == 0 ||
         c->network_name_len > ENT_EAP_AKA_NETNAME_MAX ||
         (c->autn[6] & ENT_AKA_AMF_SEPARATION_BIT) == 0))
        return ENT_EINVAL;
    w_header(&w, ENT_EAP_CODE_REQUEST, c->identifier, c->type, ENT_EAP_AKA_CHALLENGE);
    w_attr(&w, ENT_EAP_AT_RAND, 0, c->rand, sizeof(c->rand));
    w_attr(&w, ENT_EAP_AT_AUTN, 0, c->autn, sizeof(c->autn));
    if (c->type == ENT_EAP_TYPE_AKA_PRIME) {
        w_attr(&w, ENT_EAP_AT_KDF_INPUT, (uint16_t)c->network_name_len, c->network_name,
               c->network_name_len);
        w_attr(&w, ENT_EAP_AT_KDF, c->kdf, NULL, 0);
    }
    if (c->result_ind)
        w_attr(&w, ENT_EAP_AT_RESULT_IND, 0, NULL, 0);
    mac_off = w_attr(&w, ENT_EAP_AT_MAC, 0, NULL, ENT_EAP_AKA_MAC_LEN);
    rc = w_finish(&w, &len);
    if (rc != ENT_OK)
        return rc;
    rc = mac_compute(mac, out, len, mac_off, k_aut, k_aut_len);
    if (rc != ENT_OK)
        return rc;
    memcpy(out + mac_off, mac, sizeof(mac));
    *out_len = len;
    return ENT_OK;
}

ent_err ent_eap_aka_challenge_parse(struct ent_eap_aka_challenge *out, const uint8_t *pkt,
                                    size_t len)
{
    struct ent_eap_aka_challenge c;
    struct ent_eap_aka_hdr h;
    bool have_rand = false, have_autn = false, have_mac = false, have_kdf_input = false;
    bool more = true;
    size_t off = ENT_EAP_AKA_HDR_LEN;
    ent_err rc;

    rc = ent_eap_aka_peek(&h, pkt, len);
    if (rc != ENT_OK)
        return rc;
    if (h.code != ENT_EAP_CODE_REQUEST || h.subtype != ENT_EAP_AKA_CHALLENGE)
        return ENT_EINVAL;
    memset(&c, 0, sizeof(c));
    c.type = h.type;
    c.identifier = h.identifier;
    for (;;) {
        struct attr a;

        rc = attr_next(pkt, len, &off, &a, &more);
        if (rc != ENT_OK)
            return rc;
        if (!more)
            break;
        switch (a.type) {
        case ENT_EAP_AT_RAND:
            if (have_rand || a.size != 20)
                return ENT_EINVAL;
            memcpy(c.rand, a.p + 4, 16);
            have_rand = true;
            break;
        case ENT_EAP_AT_AUTN:
            if (have_autn || a.size != 20)
                return ENT_EINVAL;
            memcpy(c.autn, a.p + 4, 16);
            have_autn = true;
            break;
        case ENT_EAP_AT_MAC:
            if (have_mac || a.size != 20)
                return ENT_EINVAL;
            memcpy(c.mac, a.p + 4, 16);
            c.mac_offset = a.off + 4;
            have_mac = true;
            break;
        case ENT_EAP_AT_KDF:
            if (h.type != ENT_EAP_TYPE_AKA_PRIME || a.size != 4)
                return ENT_EINVAL;
            if (c.kdf == 0)
                c.kdf = get_be16(a.p + 2); /* RFC 5448 §3.2: the first is the preferred */
            break;
        case ENT_EAP_AT_KDF_INPUT: {
            size_t n = get_be16(a.p + 2);

            if (h.type != ENT_EAP_TYPE_AKA_PRIME || have_kdf_input || n == 0 || n > a.size - 4 ||
                n > ENT_EAP_AKA_NETNAME_MAX)
                return ENT_EINVAL;
            memcpy(c.network_name, a.p + 4, n);
            c.network_name[n] = '\0';
            c.network_name_len = n;
            have_kdf_input = true;
            break;
        }
        case ENT_EAP_AT_RESULT_IND:
            if (c.result_ind || a.size != 4)
                return ENT_EINVAL;
            c.result_ind = true;
            break;
        default:
            /* RFC 4187 §8.1: an unknown or misplaced non-skippable attribute makes the packet
             * malformed; skippable ones (AT_IV, AT_ENCR_DATA, AT_CHECKCODE, ...) are skipped */
            if (a.type < 128)
                return ENT_EINVAL;
            break;
        }
    }
    if (!have_rand || !have_autn || !have_mac)
        return ENT_EINVAL;
    if (h.type == ENT_EAP_TYPE_AKA_PRIME && (c.kdf == 0 || !have_kdf_input))
        return ENT_EINVAL;
    *out = c;
    return ENT_OK;
}

ent_err ent_eap_aka_mac_verify(const uint8_t *pkt, size_t len, size_t mac_offset,
                               const uint8_t *k_aut, size_t k_aut_len)
{
    uint8_t mac[ENT_EAP_AKA_MAC_LEN];
    ent_err rc;

    if (pkt == NULL)
        return ENT_EINVAL;
    rc = mac_compute(mac, pkt, len, mac_offset, k_aut, k_aut_len);
    if (rc != ENT_OK)
        return rc;
    if (!ent_ct_equal(mac, pkt + mac_offset, ENT_EAP_AKA_MAC_LEN))
        return ENT_EAUTH;
    return ENT_OK;
}

/* ---- responses (peer builds, server parses) ------------------------------------------ */

ent_err ent_eap_aka_response_build(uint8_t *out, size_t cap, size_t *out_len,
                                   const struct ent_eap_aka_response *r, const uint8_t *k_aut,
                                   size_t k_aut_len)
{
    struct wbuf w = {.p = out, .cap = cap};
    size_t mac_off = 0, len;
    ent_err rc;

    if (out == NULL || out_len == NULL || r == NULL || !type_ok(r->type))
        return ENT_EINVAL;
    w_header(&w, ENT_EAP_CODE_RESPONSE, r->identifier, r->type, r->subtype);
    switch (r->subtype) {
    case ENT_EAP_AKA_CHALLENGE:
        if (r->res_bits == 0) {
            /* RFC 5448 §3.2: refusing the offered KDFs, the peer names the one it wants */
            if (r->type != ENT_EAP_TYPE_AKA_PRIME || r->kdf == 0)
                return ENT_EINVAL;
            w_attr(&w, ENT_EAP_AT_KDF, r->kdf, NULL, 0);
            break;
        }
        if (r->res_bits < 32 || r->res_bits > 128 || k_aut == NULL)
            return ENT_EINVAL;
        w_attr(&w, ENT_EAP_AT_RES, r->res_bits, r->res, (r->res_bits + 7u) / 8u);
        if (r->result_ind)
            w_attr(&w, ENT_EAP_AT_RESULT_IND, 0, NULL, 0);
        mac_off = w_attr(&w, ENT_EAP_AT_MAC, 0, NULL, ENT_EAP_AKA_MAC_LEN);
        break;
    case ENT_EAP_AKA_SYNCHRONIZATION_FAILURE:
        /* AT_AUTS has no reserved field: the 14 AUTS bytes follow type and length */
        w_attr_raw(&w, ENT_EAP_AT_AUTS, r->auts, ENT_AKA_AUTS_LEN);
        if (r->type == ENT_EAP_TYPE_AKA_PRIME && r->kdf != 0)
            w_attr(&w, ENT_EAP_AT_KDF, r->kdf, NULL, 0);
        break;
    case ENT_EAP_AKA_AUTHENTICATION_REJECT:
        break;
    case ENT_EAP_AKA_CLIENT_ERROR:
        w_attr(&w, ENT_EAP_AT_CLIENT_ERROR_CODE, r->client_error_code, NULL, 0);
        break;
    default:
        return ENT_EINVAL;
    }
    rc = w_finish(&w, &len);
    if (rc != ENT_OK)
        return rc;
    if (mac_off != 0) {
        uint8_t mac[ENT_EAP_AKA_MAC_LEN];

        rc = mac_compute(mac, out, len, mac_off, k_aut, k_aut_len);
        if (rc != ENT_OK)
            return rc;
        memcpy(out + mac_off, mac, sizeof(mac));
    }
    *out_len = len;
    return ENT_OK;
}

ent_err ent_eap_aka_response_parse(struct ent_eap_aka_response *out, const uint8_t *pkt, size_t len)
{
    struct ent_eap_aka_response r;
    struct ent_eap_aka_hdr h;
    bool have_res = false, have_auts = false, have_code = false, have_checkcode = false;
    bool more = true;
    size_t off = ENT_EAP_AKA_HDR_LEN;
    ent_err rc;

    rc = ent_eap_aka_peek(&h, pkt, len);
    if (rc != ENT_OK)
        return rc;
    if (h.code != ENT_EAP_CODE_RESPONSE)
        return ENT_EINVAL;
    switch (h.subtype) {
    case ENT_EAP_AKA_CHALLENGE:
    case ENT_EAP_AKA_SYNCHRONIZATION_FAILURE:
    case ENT_EAP_AKA_AUTHENTICATION_REJECT:
    case ENT_EAP_AKA_CLIENT_ERROR:
        break;
    default:
        return ENT_EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.type = h.type;
    r.identifier = h.identifier;
    r.subtype = h.subtype;
    for (;;) {
        struct attr a;

        rc = attr_next(pkt, len, &off, &a, &more);
        if (rc != ENT_OK)
            return rc;
        if (!more)
            break;
        switch (a.type) {
        case ENT_EAP_AT_RES: {
            unsigned bits, bytes;

            if (h.subtype != ENT_EAP_AKA_CHALLENGE || have_res)
                return ENT_EINVAL;
            bits = get_be16(a.p + 2);
            bytes = (bits + 7) / 8;
            /* RFC 4187 §10.8: 32..128 bits, padded to the next multiple of 4 bytes */
            if (bits < 32 || bits > 128 || bytes > a.size - 4 || a.size - 4 - bytes >= 4)
                return ENT_EINVAL;
            memcpy(r.res, a.p + 4, bytes);
            r.res_bits = (uint16_t)bits;
            have_res = true;
            break;
        }
        case ENT_EAP_AT_MAC:
            if (h.subtype != ENT_EAP_AKA_CHALLENGE || r.has_mac || a.size != 20)
                return ENT_EINVAL;
            memcpy(r.mac, a.p + 4, 16);
            r.mac_offset = a.off + 4;
            r.has_mac = true;
            break;
        case ENT_EAP_AT_AUTS:
            if (h.subtype != ENT_EAP_AKA_SYNCHRONIZATION_FAILURE || have_auts || a.size != 16)
                return ENT_EINVAL;
            memcpy(r.auts, a.p + 2, ENT_AKA_AUTS_LEN);
            have_auts = true;
            break;
        case ENT_EAP_AT_CLIENT_ERROR_CODE:
            if (h.subtype != ENT_EAP_AKA_CLIENT_ERROR || have_code || a.size != 4)
                return ENT_EINVAL;
            r.client_error_code = get_be16(a.p + 2);
            have_code = true;
            break;
        case ENT_EAP_AT_KDF:
            if (h.type != ENT_EAP_TYPE_AKA_PRIME || r.kdf != 0 || a.size != 4 ||
                (h.subtype != ENT_EAP_AKA_CHALLENGE &&
                 h.subtype != ENT_EAP_AKA_SYNCHRONIZATION_FAILURE))
                return ENT_EINVAL;
            r.kdf = get_be16(a.p + 2);
            if (r.kdf == 0)
                return ENT_EINVAL;
            break;
        case ENT_EAP_AT_CHECKCODE:
            /* Skippable. Empty (length 1) is what we expect since the server never runs
             * AKA-Identity; a non-empty one cannot match and is flagged for verify. */
            if (have_checkcode)
                return ENT_EINVAL;
            have_checkcode = true;
            if (a.size > 4)
                r.checkcode_nonempty = true;
            break;
        case ENT_EAP_AT_RESULT_IND:
            if (r.result_ind || a.size != 4)
                return ENT_EINVAL;
            r.result_ind = true;
            break;
        default:
            if (a.type < 128)
                return ENT_EINVAL; /* RFC 4187 §8.1 */
            break;
        }
    }
    switch (h.subtype) {
    case ENT_EAP_AKA_CHALLENGE:
        if (have_res != r.has_mac)
            return ENT_EINVAL;
        if (!have_res && r.kdf == 0)
            return ENT_EINVAL;
        if (have_res && r.kdf != 0)
            return ENT_EINVAL;
        break;
    case ENT_EAP_AKA_SYNCHRONIZATION_FAILURE:
        if (!have_auts)
            return ENT_EINVAL;
        break;
    case ENT_EAP_AKA_CLIENT_ERROR:
        if (!have_code)
            return ENT_EINVAL;
        break;
    default:
        break;
    }
    *out = r;
    return ENT_OK;
}

ent_err ent_eap_aka_response_verify(const struct ent_eap_aka_response *r, const uint8_t *pkt,
                                    size_t len, uint8_t type, uint8_t identifier,
                                    const uint8_t *xres, size_t xres_len, const uint8_t *k_aut,
                                    size_t k_aut_len)
{
    bool res_ok;
    ent_err rc;

    if (r == NULL || pkt == NULL || xres == NULL || xres_len == 0 || xres_len > ENT_AKA_RES_MAX)
        return ENT_EINVAL;
    if (r->subtype != ENT_EAP_AKA_CHALLENGE || r->type != type || r->identifier != identifier ||
        !r->has_mac || len < ENT_EAP_AKA_HDR_LEN || pkt[4] != type || pkt[1] != identifier)
        return ENT_EINVAL;
    if (r->checkcode_nonempty)
        return ENT_EAUTH;
    rc = ent_eap_aka_mac_verify(pkt, len, r->mac_offset, k_aut, k_aut_len);
    if (rc != ENT_OK)
        return rc;
    res_ok = r->res_bits == xres_len * 8;
    /* compare whole bytes in constant time, whatever the length outcome */
    res_ok = ent_ct_equal(r->res, xres, xres_len) && res_ok;
    return res_ok ? ENT_OK : ENT_EAUTH;
}

/* ---- identity ------------------------------------------------------------------------ */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];

        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

static bool digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return false;
    }
    return true;
}

/* DNS-ish labels: [A-Za-z0-9-] separated by single dots, no empty label. */
static bool prefix_ok(const char *p, size_t n)
{
    bool label_start = true;

    for (size_t i = 0; i < n; i++) {
        char c = p[i];

        if (c == '.') {
            if (label_start)
                return false;
            label_start = true;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-'))
            return false;
        label_start = false;
    }
    return n == 0 || !label_start;
}

ent_err ent_eap_aka_identity_parse(struct ent_eap_aka_identity *out, const char *id, size_t len)
{
    static const char tail[] = ".3gppnetwork.org";
    const size_t tail_len = sizeof(tail) - 1;
    /* "mncDDD.mccDDD" */
    const size_t plmn_len = 13;
    struct ent_eap_aka_identity r;
    const char *at, *realm, *plmn;
    size_t user_len, realm_len, imsi_len, prefix_len;

    if (out == NULL || id == NULL || len == 0 || len > ENT_EAP_AKA_IDENTITY_MAX)
        return ENT_EINVAL;
    memset(&r, 0, sizeof(r));
    switch (id[0]) {
    case '0':
        r.type = ENT_EAP_TYPE_AKA;
        break;
    case '6':
        r.type = ENT_EAP_TYPE_AKA_PRIME;
        break;
    case '1': /* EAP-SIM permanent */
    case '2': /* EAP-AKA pseudonym */
    case '3': /* EAP-SIM pseudonym */
    case '4': /* EAP-AKA fast re-authentication */
    case '5': /* EAP-SIM fast re-authentication */
    case '7': /* EAP-AKA' pseudonym */
    case '8': /* EAP-AKA' fast re-authentication */
        return ENT_EUNSUPPORTED;
    default:
        return ENT_EINVAL;
    }
    at = memchr(id, '@', len);
    if (at == NULL)
        return ENT_EINVAL;
    user_len = (size_t)(at - id);
    imsi_len = user_len - 1;
    if (imsi_len < 6 || imsi_len > ENT_EAP_AKA_IMSI_MAX || !digits(id + 1, imsi_len))
        return ENT_EINVAL;
    realm = at + 1;
    realm_len = len - user_len - 1;
    if (realm_len < plmn_len + tail_len || !ieq(realm + realm_len - tail_len, tail, tail_len))
        return ENT_EINVAL;
    plmn = realm + realm_len - tail_len - plmn_len;
    if (!ieq(plmn, "mnc", 3) || !digits(plmn + 3, 3) || plmn[6] != '.' ||
        !ieq(plmn + 7, "mcc", 3) || !digits(plmn + 10, 3))
        return ENT_EINVAL;
    prefix_len = (size_t)(plmn - realm);
    if (prefix_len > 0) {
        if (prefix_len < 2 || realm[prefix_len - 1] != '.' || !prefix_ok(realm, prefix_len - 1))
            return ENT_EINVAL;
        memcpy(r.prefix, realm, prefix_len - 1);
    }
    memcpy(r.imsi, id + 1, imsi_len);
    memcpy(r.mcc, plmn + 10, 3);
    /* The realm always pads MNC to 3 digits (TS 23.003 §19.3.2); the IMSI tells whether the
     * home MNC has 2 or 3. */
    r.home_plmn = memcmp(r.imsi, r.mcc, 3) == 0;
    if (r.home_plmn && memcmp(r.imsi + 3, plmn + 3, 3) == 0) {
        memcpy(r.mnc, plmn + 3, 3);
    } else if (r.home_plmn && plmn[3] == '0' && memcmp(r.imsi + 3, plmn + 4, 2) == 0) {
        memcpy(r.mnc, plmn + 4, 2);
    } else {
        memcpy(r.mnc, plmn + 3, 3);
        r.home_plmn = false;
    }
    *out = r;
    return ENT_OK;
}

/* ---- keys ---------------------------------------------------------------------------- */

ent_err ent_eap_aka_mk(uint8_t mk[ENT_EAP_AKA_MK_LEN], const uint8_t *identity, size_t id_len,
                       const uint8_t ik[ENT_AKA_IK_LEN], const uint8_t ck[ENT_AKA_CK_LEN])
{
    EVP_MD_CTX *md;
    unsigned n = 0;
    ent_err rc = ENT_OK;

    if (mk == NULL || identity == NULL || id_len == 0 || ik == NULL || ck == NULL)
        return ENT_EINVAL;
    md = EVP_MD_CTX_new();
    if (md == NULL)
        return ENT_ENOMEM;
    if (EVP_DigestInit_ex(md, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(md, identity, id_len) != 1 ||
        EVP_DigestUpdate(md, ik, ENT_AKA_IK_LEN) != 1 ||
        EVP_DigestUpdate(md, ck, ENT_AKA_CK_LEN) != 1 || EVP_DigestFinal_ex(md, mk, &n) != 1 ||
        n != ENT_EAP_AKA_MK_LEN)
        rc = ENT_EINTERNAL;
    EVP_MD_CTX_free(md);
    return rc;
}

void ent_eap_aka_keys_from_mk(struct ent_eap_aka_keys *out, const uint8_t mk[ENT_EAP_AKA_MK_LEN])
{
    /* 16 + 16 + 64 + 64 = 160 bytes: eight 20-byte PRF outputs */
    uint8_t x[160];

    ent_aka__fips186_prf(x, sizeof(x), mk);
    memset(out, 0, sizeof(*out));
    memcpy(out->k_encr, x, 16);
    memcpy(out->k_aut, x + 16, 16);
    out->k_aut_len = ENT_EAP_AKA_K_AUT_LEN;
    memcpy(out->msk, x + 32, 64);
    memcpy(out->emsk, x + 96, 64);
    OPENSSL_cleanse(x, sizeof(x));
}

ent_err ent_eap_aka_keys_derive(struct ent_eap_aka_keys *out, const uint8_t *identity,
                                size_t id_len, const uint8_t ik[ENT_AKA_IK_LEN],
                                const uint8_t ck[ENT_AKA_CK_LEN])
{
    uint8_t mk[ENT_EAP_AKA_MK_LEN];
    ent_err rc;

    if (out == NULL)
        return ENT_EINVAL;
    rc = ent_eap_aka_mk(mk, identity, id_len, ik, ck);
    if (rc != ENT_OK)
        return rc;
    ent_eap_aka_keys_from_mk(out, mk);
    OPENSSL_cleanse(mk, sizeof(mk));
    return ENT_OK;
}
