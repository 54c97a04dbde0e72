/* SPDX-License-Identifier: Apache-2.0 */
/* EAP-AKA' key derivation (see aka/aka_prime.h). */
#include "aka/aka_prime.h"

#include <string.h>

#include <openssl/crypto.h>

#include "aka/kdf_int.h"

ent_err ent_aka_prime_ck_ik(uint8_t ck_prime[ENT_AKA_CK_LEN], uint8_t ik_prime[ENT_AKA_IK_LEN],
                            const uint8_t ck[ENT_AKA_CK_LEN], const uint8_t ik[ENT_AKA_IK_LEN],
                            const char *network_name, size_t network_name_len,
                            const uint8_t sqn_xor_ak[ENT_SQN_LEN])
{
    static const uint8_t fc = ENT_AKA_PRIME_FC;
    static const uint8_t l1[2] = {0x00, ENT_SQN_LEN};
    uint8_t key[ENT_AKA_CK_LEN + ENT_AKA_IK_LEN], l0[2], out[ENT_AKA__SHA256_LEN];
    struct ent_aka__iov s[5];
    ent_err rc;

    if (ck_prime == NULL || ik_prime == NULL || ck == NULL || ik == NULL || network_name == NULL ||
        network_name_len == 0 || network_name_len > ENT_EAP_AKA_NETNAME_MAX || sqn_xor_ak == NULL)
        return ENT_EINVAL;
    memcpy(key, ck, ENT_AKA_CK_LEN);
    memcpy(key + ENT_AKA_CK_LEN, ik, ENT_AKA_IK_LEN);
    l0[0] = (uint8_t)(network_name_len >> 8);
    l0[1] = (uint8_t)network_name_len;
    s[0] = (struct ent_aka__iov){&fc, 1};
    s[1] = (struct ent_aka__iov){network_name, network_name_len};
    s[2] = (struct ent_aka__iov){l0, sizeof(l0)};
    s[3] = (struct ent_aka__iov){sqn_xor_ak, ENT_SQN_LEN};
    s[4] = (struct ent_aka__iov){l1, sizeof(l1)};
    rc = ent_aka__hmac("SHA256", key, sizeof(key), s, 5, out);
    if (rc == ENT_OK) {
        memcpy(ck_prime, out, ENT_AKA_CK_LEN);
        memcpy(ik_prime, out + ENT_AKA_CK_LEN, ENT_AKA_IK_LEN);
    }
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(out, sizeof(out));
    return rc;
}

ent_err ent_aka_prime_keys_derive(struct ent_eap_aka_keys *out, const uint8_t *identity,
                                  size_t id_len, const uint8_t ik_prime[ENT_AKA_IK_LEN],
                                  const uint8_t ck_prime[ENT_AKA_CK_LEN])
{
    static const char label[] = "EAP-AKA'";
    /* K_encr 16 | K_aut 32 | K_re 32 | MSK 64 | EMSK 64 */
    uint8_t key[ENT_AKA_IK_LEN + ENT_AKA_CK_LEN], mk[208];
    struct ent_aka__iov s[2];
    ent_err rc;

    if (out == NULL || identity == NULL || id_len == 0 || id_len > ENT_EAP_AKA_IDENTITY_MAX ||
        ik_prime == NULL || ck_prime == NULL)
        return ENT_EINVAL;
    /* RFC 5448 §3.3: the PRF' key is IK' || CK' (IK' first, unlike the CK'/IK' input) */
    memcpy(key, ik_prime, ENT_AKA_IK_LEN);
    memcpy(key + ENT_AKA_IK_LEN, ck_prime, ENT_AKA_CK_LEN);
    s[0] = (struct ent_aka__iov){label, sizeof(label) - 1};
    s[1] = (struct ent_aka__iov){identity, id_len};
    rc = ent_aka__prf_prime(mk, sizeof(mk), key, sizeof(key), s, 2);
    if (rc == ENT_OK) {
        memset(out, 0, sizeof(*out));
        memcpy(out->k_encr, mk, 16);
        memcpy(out->k_aut, mk + 16, 32);
        out->k_aut_len = ENT_EAP_AKA_PRIME_K_AUT_LEN;
        memcpy(out->k_re, mk + 48, 32);
        memcpy(out->msk, mk + 80, 64);
        memcpy(out->emsk, mk + 144, 64);
    }
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(mk, sizeof(mk));
    return rc;
}

bool ent_aka_prime_amf_ok(const uint8_t amf[ENT_AKA_AMF_LEN])
{
    return amf != NULL && (amf[0] & ENT_AKA_AMF_SEPARATION_BIT) != 0;
}
