/* SPDX-License-Identifier: Apache-2.0 */
/* Sealing: authenticated encryption (AES-256-GCM) of small blobs under a keyring, so that
 * what one process seals another can open, and the sealing key can rotate without breaking
 * what is already out there. This header owns the keyring (its file format, loading, key
 * ids) and the sealed-blob format; what is sealed (EAP exchange tickets, tokens, wrapped
 * credentials) and for how long it is valid belongs to the callers.
 *
 * Keyring file: one key per line, `<key-id> <64 hex chars>` (key id 1..32 of [A-Za-z0-9._-]);
 * a line holding only the 64 hex chars is a key whose id is "k" + the first 8 hex chars of
 * SHA-256(key) (so a bare KEK file is a one-key keyring). Blank lines and lines starting with
 * '#' are ignored. The FIRST key seals; every key opens. Rotation: put the new key first,
 * keep the old ones after it until nothing sealed under them is still needed.
 *
 * Sealed blob (all lengths in bytes):
 *
 *   version (1) = 1 | id_len (1) | key id (id_len) | nonce (12, random) | ciphertext | tag (16)
 *
 * The additional authenticated data is the caller's `purpose` string, a NUL, then the
 * version, id_len and key id bytes: a blob sealed for one purpose ("entitle.token.v1") never
 * opens for another, and a changed key id fails the tag.
 *
 * Threads: a loaded keyring is immutable; any thread may seal and open with it at once.
 * Key bytes never leave this module and are wiped on free. */
#ifndef ENT_SEAL_H
#define ENT_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "ent/err.h"

#define ENT_SEAL_KEY_LEN    32
#define ENT_SEAL_KEY_ID_MAX 32
#define ENT_SEAL_NONCE_LEN  12
#define ENT_SEAL_TAG_LEN    16
#define ENT_SEAL_VERSION    1
/* Largest overhead over the plaintext (longest key id). */
#define ENT_SEAL_OVERHEAD_MAX (2 + ENT_SEAL_KEY_ID_MAX + ENT_SEAL_NONCE_LEN + ENT_SEAL_TAG_LEN)

struct ent_keyring;

/* Parses keyring text (format above). On failure a one-line reason naming the line (never
 * key material) goes to err (if err_len > 0). Errors: ENT_ECONFIG (syntax, bad hex, bad or
 * duplicate id, no key), ENT_ENOMEM. *out is written only on ENT_OK. */
ent_err ent_keyring_parse(struct ent_keyring **out, const char *text, size_t len, char *err,
                          size_t err_len);

/* ent_keyring_parse() of a file (at most 64 KiB). ENT_ECONFIG also for an unreadable file. */
ent_err ent_keyring_load(struct ent_keyring **out, const char *path, char *err, size_t err_len);

/* Wipes the keys and frees kr. NULL is a no-op. No seal/open may be running. */
void ent_keyring_free(struct ent_keyring *kr);

/* The id of the sealing key (the first one); a string owned by kr. */
const char *ent_keyring_current_id(const struct ent_keyring *kr);

/* Number of keys in the ring. */
size_t ent_keyring_count(const struct ent_keyring *kr);

/* Exact length of a blob sealing pt_len bytes under the current key. */
size_t ent_seal_len(const struct ent_keyring *kr, size_t pt_len);

/* Seals pt (pt_len may be 0) for `purpose` (non-empty) under the current key into out.
 * Errors: ENT_ETOOBIG if cap < ent_seal_len(), ENT_EINVAL (no purpose),
 * ENT_EINTERNAL (OpenSSL or the random generator failed), ENT_ENOMEM. */
ent_err ent_seal(const struct ent_keyring *kr, const char *purpose, const uint8_t *pt,
                 size_t pt_len, uint8_t *out, size_t cap, size_t *out_len);

/* Opens a blob sealed for `purpose`. The plaintext is len - overhead bytes; out needs that
 * much room (ENT_ETOOBIG otherwise). *key_id (may be NULL) gets the id of the key that
 * opened it (owned by kr): callers re-seal what an old key opened. Errors: ENT_EINVAL for a
 * blob too short or of another version, ENT_EAUTH for an unknown key id or a failed tag
 * (tampered, wrong purpose), ENT_EINTERNAL, ENT_ENOMEM. On error *out_len and *key_id are untouched
 * and out holds zeros (never unauthenticated plaintext). */
ent_err ent_unseal(const struct ent_keyring *kr, const char *purpose, const uint8_t *in, size_t len,
                   uint8_t *out, size_t cap, size_t *out_len, const char **key_id);

/* Fills out[0..n) from OpenSSL's public DRBG of the calling thread: seal nonces, AKA RANDs,
 * exchange ids. Any thread. RAND_bytes() ends in the same DRBG, but OpenSSL 3.0 first takes
 * a process-wide write lock on every call to look up the RAND method; with authd's worker
 * threads that lock was 8 % of its samples (issue #4). ENT_EINTERNAL if the DRBG fails. */
ent_err ent_random_bytes(uint8_t *out, size_t n);

#endif
