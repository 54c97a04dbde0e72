/* SPDX-License-Identifier: Apache-2.0 */
/* Private to authd/aka: the keyed primitives shared by eap_aka.c and aka_prime.c (HMAC over
 * scattered pieces, the FIPS 186-2 PRF of RFC 4187 and PRF' of RFC 5448). Not a public API:
 * nothing outside authd/aka includes this header. Symbols use the `ent_aka__` prefix. */
#ifndef ENT_AKA_KDF_INT_H
#define ENT_AKA_KDF_INT_H

#include <stddef.h>
#include <stdint.h>

#include "ent/err.h"

struct ent_aka__iov {
    const void *p;
    size_t len;
};

#define ENT_AKA__SHA1_LEN   20
#define ENT_AKA__SHA256_LEN 32

/* HMAC-`digest` ("SHA1" or "SHA256") of the concatenated pieces; writes the full digest
 * (20 or 32 bytes) into out. ENT_ENOMEM / ENT_EINTERNAL on OpenSSL failure. Thread-safe. */
ent_err ent_aka__hmac(const char *digest, const uint8_t *key, size_t key_len,
                      const struct ent_aka__iov *iov, size_t n, uint8_t *out);

/* FIPS 186-2 change notice 1 general-purpose PRF (RFC 4187 §7 and Appendix B) with
 * XSEED = 0: fills out_len bytes (a multiple of 40) from the 20-byte XKEY. */
void ent_aka__fips186_prf(uint8_t *out, size_t out_len, const uint8_t xkey[20]);

/* PRF'(K, S) of RFC 5448 §3.4: T1 = HMAC-SHA-256(K, S | 0x01), Tn = HMAC(K, Tn-1 | S | n);
 * out_len <= 255 * 32. */
ent_err ent_aka__prf_prime(uint8_t *out, size_t out_len, const uint8_t *key, size_t key_len,
                           const struct ent_aka__iov *s, size_t n_s);

#endif
