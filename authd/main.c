/* SPDX-License-Identifier: Apache-2.0 */
/* entitle-authd: everything lives in the entitle_authd library and the shared skeleton. */
#include <stdlib.h>

#include "authd.h"

/* Each RPC is a job on the libuv thread pool that blocks in the store (rpc.c), and the SQLite
 * store commits the writes of concurrent callers together (store_sqlite.c), so the pool size
 * bounds how many writes share one fsync: libuv's default of 4 held authd to ~3,000
 * authentications/s where 32-64 threads give ~4,000 (tests/bench/bench_auth). 64 matches the
 * bus's default in-flight limit (bus.workers) and the store's batch bound. libuv reads the
 * variable once, when the pool first starts, hence here before anything runs; an operator's
 * own UV_THREADPOOL_SIZE wins. */
#define AUTHD_THREADPOOL_SIZE "64"

int main(int argc, char **argv)
{
    /* Best effort: without it the pool keeps libuv's default size. */
    (void)setenv("UV_THREADPOOL_SIZE", AUTHD_THREADPOOL_SIZE, 0);
    return ent_daemon_main(&authd_daemon, argc, argv);
}
