/* The dead-host stall count with prefork workers, cachet's side (the
 * Python peers: bench/deadhost.py; both run by bench/run-deadhost).
 *
 *   bench/deadhost --servers URL --backend memcached|memcache_pool
 *                  [--workers 8] [--gets 40] [--shared true|false]
 *
 * The parent opens one region (memcache_servers URL, socket_timeout 1 s,
 * dead_retry 30 s) and makes no call; it forks the workers, as a prefork
 * server does, and each makes its gets (a key of its own each time, 5 ms
 * apart).  A stall is a get that took >= 0.5 s.  Prints
 *   STALLS <impl> <stalls> <gets> <seconds>
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "bench_util.h"

static void die(const char *why)
{
    fprintf(stderr, "deadhost: %s\n", why);
    exit(1);
}

int main(int argc, char **argv)
{
    const char *servers = NULL, *backend = "memcached", *shared = "true";
    int workers = 8, gets = 40, go[2], res[2], total = 0;
    char impl[96], arg[64];
    cachet_config *c;
    cachet_region *r;
    double t0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--servers") == 0)
            servers = argv[i + 1];
        else if (strcmp(argv[i], "--backend") == 0)
            backend = argv[i + 1];
        else if (strcmp(argv[i], "--workers") == 0)
            workers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--gets") == 0)
            gets = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--shared") == 0)
            shared = argv[i + 1];
        else
            die("usage: deadhost --servers URL [--backend B] [--workers W] [--gets N] "
                "[--shared true|false]");
    }
    if (!servers || workers < 1 || workers > 256 || gets < 1)
        die("--servers is required; 1 <= workers <= 256");
    snprintf(arg, sizeof arg, "shared_host_state:%s", shared);
    c = cachet_config_new();
    if (cachet_config_set(c, "enabled", "true") != CACHET_OK ||
        cachet_config_set(c, "backend", backend) != CACHET_OK ||
        cachet_config_set(c, "memcache_servers", servers) != CACHET_OK ||
        cachet_config_set(c, "memcache_socket_timeout", "1") != CACHET_OK ||
        cachet_config_set(c, "memcache_dead_retry", "30") != CACHET_OK ||
        cachet_config_set(c, "backend_argument", arg) != CACHET_OK ||
        cachet_region_open(c, &r) != CACHET_OK)
        die(cachet_errmsg());
    cachet_config_free(c);
    if (pipe(go) != 0 || pipe(res) != 0)
        die("pipe");
    for (int w = 0; w < workers; w++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            char ch, key[48];
            int slow = 0;
            close(go[1]);
            if (read(go[0], &ch, 1) < 0)       /* EOF: every worker starts now */
                _exit(1);
            for (int i = 0; i < gets; i++) {
                void *v;
                size_t n;
                double t = bench_now();
                snprintf(key, sizeof key, "dh-%d-%d-%d", (int)getppid(), w, i);
                if (cachet_get(r, key, &v, &n) == CACHET_OK)
                    cachet_free(v);
                slow += bench_now() - t >= 0.5;
                usleep(5000);
            }
            if (write(res[1], &slow, sizeof slow) != (ssize_t)sizeof slow)
                _exit(1);
            _exit(0);
        }
    }
    t0 = bench_now();
    close(go[0]);
    close(go[1]);
    close(res[1]);
    for (int w = 0; w < workers; w++) {
        int slow;
        if (read(res[0], &slow, sizeof slow) != (ssize_t)sizeof slow)
            die("a worker died");
        total += slow;
    }
    while (wait(NULL) > 0)
        ;
    snprintf(impl, sizeof impl, "cachet-%s%s", backend,
             strcmp(shared, "false") == 0 ? "(shared_host_state=false)" : "");
    printf("STALLS %s %d %d %.2f\n", impl, total, workers * gets, bench_now() - t0);
    cachet_region_close(r);
    return 0;
}
