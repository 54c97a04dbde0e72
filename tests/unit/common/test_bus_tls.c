/* SPDX-License-Identifier: Apache-2.0 */
/* ent/bus.h over tls+tcp with mutual authentication. The test makes a throwaway CA, a
 * server certificate, a client certificate signed by the CA and a self-signed "rogue"
 * client certificate with the openssl CLI in a temporary directory. A client holding the
 * CA-signed certificate completes a round trip; the rogue one is refused during the
 * handshake, so its call never reaches the handler and times out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>

#include "test_bus_support.h"

static char tmpdir[64];

static const char *const generated[] = {"ca.key",  "ca.crt",  "srv.key",   "srv.csr",
                                        "srv.crt", "srv.ext", "cli.key",   "cli.csr",
                                        "cli.crt", "cli.ext", "rogue.key", "rogue.crt"};

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int write_file(const char *name, const char *text)
{
    char p[128];
    path_in(p, sizeof(p), name);
    FILE *f = fopen(p, "w");
    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

/* EC P-256 keys: quick to make, and mbedTLS 2.28 reads OpenSSL 3's PKCS#8 PEM. */
#define NEWKEY "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

static int make_pki(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/entitle-bus-tls-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    if (write_file("srv.ext", "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                              "subjectAltName=DNS:localhost,IP:127.0.0.1\n") != 0 ||
        write_file("cli.ext", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n") != 0)
        return -1;
    const char *q = "> /dev/null 2>&1";
    if (sh("cd %s && openssl req -x509 " NEWKEY " -keyout ca.key -out ca.crt -days 2 "
           "-subj /CN=entitle-test-ca -addext basicConstraints=critical,CA:TRUE "
           "-addext keyUsage=critical,keyCertSign,cRLSign %s",
           tmpdir, q) != 0)
        return -1;
    const char *leaves[] = {"srv", "cli"};
    const char *cns[] = {"localhost", "gateway-test"};
    for (int i = 0; i < 2; i++) {
        if (sh("cd %s && openssl req -new " NEWKEY " -keyout %s.key -out %s.csr -subj /CN=%s %s",
               tmpdir, leaves[i], leaves[i], cns[i], q) != 0)
            return -1;
        if (sh("cd %s && openssl x509 -req -in %s.csr -CA ca.crt -CAkey ca.key -set_serial %d "
               "-days 2 -extfile %s.ext -out %s.crt %s",
               tmpdir, leaves[i], 100 + i, leaves[i], leaves[i], q) != 0)
            return -1;
    }
    /* Same name as the good client, but nobody vouches for it. */
    if (sh("cd %s && openssl req -x509 " NEWKEY " -keyout rogue.key -out rogue.crt -days 2 "
           "-subj /CN=gateway-test %s",
           tmpdir, q) != 0)
        return -1;
    return 0;
}

static int remove_pki(void **state)
{
    (void)state;
    char p[128];
    for (size_t i = 0; i < ENT_ARRAY_LEN(generated); i++) {
        path_in(p, sizeof(p), generated[i]);
        unlink(p);
    }
    return rmdir(tmpdir) == 0 ? 0 : -1;
}

struct pki_paths {
    char ca[128];
    char cert[128];
    char key[128];
};

static struct ent_bus_tls_cfg tls_for(struct pki_paths *pp, const char *who)
{
    char name[32];
    path_in(pp->ca, sizeof(pp->ca), "ca.crt");
    snprintf(name, sizeof(name), "%s.crt", who);
    path_in(pp->cert, sizeof(pp->cert), name);
    snprintf(name, sizeof(name), "%s.key", who);
    path_in(pp->key, sizeof(pp->key), name);
    return (struct ent_bus_tls_cfg){
        .ca_file = pp->ca, .cert_file = pp->cert, .key_file = pp->key, .server_name = "localhost"};
}

static void test_bus_tls_mutual_auth(void **state)
{
    (void)state;
    struct tb_harness h;
    struct tb_server srv;
    struct tb_client good;
    struct tb_client rogue;
    struct tb_call call;
    struct pki_paths sp, gp, rp;
    tb_init(&h);
    struct ent_bus_tls_cfg stls = tls_for(&sp, "srv");
    struct ent_bus_tls_cfg gtls = tls_for(&gp, "cli");
    struct ent_bus_tls_cfg rtls = tls_for(&rp, "rogue");

    int port = tb_server_start(&srv, &h, "tls+tcp://127.0.0.1:0", &stls, "srv-tls");
    tb_client_start(&good, &h, "tls+tcp", port, 4, &gtls);
    assert_int_equal(tb_ping(&good.bus, "good", tb_ms(10000), &call), ENT_OK);
    assert_true(tb_run_until(&h, &call.done, tb_ms(15000)));
    assert_int_equal(call.status, ENT_OK);
    assert_string_equal(call.daemon, "srv-tls");
    assert_string_equal(call.instance, "good");
    assert_int_equal(srv.handled, 1);

    /* The server requires a client certificate from its CA: the handshake fails, the
     * client keeps re-dialling, and the call runs out its deadline. */
    tb_client_start(&rogue, &h, "tls+tcp", port, 4, &rtls);
    assert_int_equal(tb_ping(&rogue.bus, "rogue", 1500, &call), ENT_OK);
    assert_true(tb_run_until(&h, &call.done, tb_ms(15000)));
    assert_int_equal(call.status, ENT_ETIMEDOUT);
    assert_int_equal(srv.handled, 1);

    tb_client_stop(&rogue, &h);
    tb_client_stop(&good, &h);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

static void test_bus_tls_client_rejects_unknown_server(void **state)
{
    (void)state;
    struct tb_harness h;
    struct tb_server srv;
    struct tb_client cli;
    struct tb_call call;
    struct pki_paths sp, cp;
    tb_init(&h);
    /* The server presents the self-signed rogue identity; the client trusts only the CA. */
    struct ent_bus_tls_cfg stls = tls_for(&sp, "rogue");
    struct ent_bus_tls_cfg ctls = tls_for(&cp, "cli");
    int port = tb_server_start(&srv, &h, "tls+tcp://127.0.0.1:0", &stls, "impostor");
    tb_client_start(&cli, &h, "tls+tcp", port, 4, &ctls);
    assert_int_equal(tb_ping(&cli.bus, "good", 1500, &call), ENT_OK);
    assert_true(tb_run_until(&h, &call.done, tb_ms(15000)));
    assert_int_equal(call.status, ENT_ETIMEDOUT);
    assert_int_equal(srv.handled, 0);
    tb_client_stop(&cli, &h);
    tb_server_stop(&srv, &h);
    tb_fini(&h);
}

static void test_bus_tls_bad_files_are_config_errors(void **state)
{
    (void)state;
    struct tb_harness h;
    struct ent_bus_server s;
    tb_init(&h);
    struct ent_bus_tls_cfg tls = {.ca_file = "/nonexistent/ca.crt",
                                  .cert_file = "/nonexistent/srv.crt",
                                  .key_file = "/nonexistent/srv.key"};
    struct ent_bus_server_cfg cfg = {.listen = "tls+tcp://127.0.0.1:0", .tls = &tls};
    assert_int_equal(ent_bus_server_init(&s, &h.loop, &cfg, tb_on_request, NULL), ENT_ECONFIG);
    tb_fini(&h);
}

int main(void)
{
    if (system("openssl version > /dev/null 2>&1") != 0) {
        fprintf(stderr, "openssl CLI not found; skipping\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_tls_mutual_auth),
        cmocka_unit_test(test_bus_tls_client_rejects_unknown_server),
        cmocka_unit_test(test_bus_tls_bad_files_are_config_errors),
    };
    int rc = cmocka_run_group_tests(tests, make_pki, remove_pki);
    nng_fini();
    return rc;
}
