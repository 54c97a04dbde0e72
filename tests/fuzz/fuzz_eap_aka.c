/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer driver for the EAP-AKA/AKA' parsers in authd/aka/eap_aka.h (not built by default;
 * wire it with -fsanitize=fuzzer,address,undefined and link entitle_aka). Every input goes
 * through the header peek, the Challenge parser (peer side) and the response parser (server
 * side); accepted packets are then MAC-checked under a fixed key and re-built, which must not
 * fail on a parsed structure. The first input byte also feeds the identity parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aka/eap_aka.h"

static const uint8_t fuzz_key[32] = {0x66, 0xb9, 0x1f, 0xf3, 0x04, 0x7c, 0xf8, 0xf4,
                                     0xca, 0x60, 0x62, 0xc7, 0xe1, 0xcd, 0xa2, 0xae};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ent_eap_aka_hdr h;
    struct ent_eap_aka_challenge c;
    struct ent_eap_aka_response r;
    struct ent_eap_aka_identity id;
    uint8_t out[ENT_EAP_AKA_PACKET_MAX];
    size_t out_len;

    (void)ent_eap_aka_peek(&h, data, size);
    if (ent_eap_aka_challenge_parse(&c, data, size) == ENT_OK) {
        size_t klen = c.type == ENT_EAP_TYPE_AKA ? 16 : 32;

        (void)ent_eap_aka_mac_verify(data, size, c.mac_offset, fuzz_key, klen);
        if (c.type == ENT_EAP_TYPE_AKA_PRIME)
            c.kdf = ENT_EAP_AKA_KDF_CK_IK_PRIME;
        (void)ent_eap_aka_challenge_build(out, sizeof(out), &out_len, &c, fuzz_key, klen);
    }
    if (ent_eap_aka_response_parse(&r, data, size) == ENT_OK) {
        size_t klen = r.type == ENT_EAP_TYPE_AKA ? 16 : 32;

        if (r.has_mac)
            (void)ent_eap_aka_response_verify(&r, data, size, r.type, r.identifier,
                                              (const uint8_t *)"01234567", 8, fuzz_key, klen);
        if (ent_eap_aka_response_build(out, sizeof(out), &out_len, &r, fuzz_key, klen) != ENT_OK)
            abort(); /* a structure the parser accepted must serialise */
    }
    (void)ent_eap_aka_identity_parse(&id, (const char *)data, size);
    return 0;
}
