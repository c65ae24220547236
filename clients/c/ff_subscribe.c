/*
 * Example subscriber: prints one canonical JSON line per delivered message (docs/clients.md)
 * and, on SIGTERM/SIGINT or after --count messages, the final books and the counters.
 *
 *   ./ff_subscribe --pub ipc:///run/ff/binance.pub --snapshot ipc:///run/ff/binance.snap \
 *                  --prefix book.BINANCE. --prefix trades.BINANCE.
 * (repeat --pub/--snapshot per gateway; the n-th --snapshot belongs to the n-th --pub, '-' = none)
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "ff.h"

#define MAXN 64

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void usage(void) {
    fprintf(stderr, "usage: ff_subscribe --pub ENDPOINT [--snapshot ENDPOINT|-] [--prefix P]... "
                    "[--heartbeat-timeout S] [--count N]\n");
    exit(2);
}

int main(int argc, char **argv) {
    ff_endpoint eps[MAXN];
    const char *snaps[MAXN];
    const char *prefixes[MAXN];
    size_t npub = 0, nsnap = 0, npre = 0;
    long count = 0;
    ff_options opt = {1, 3.0, 2.0, 100000};
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--pub") && npub < MAXN) eps[npub++].pub = v;
        else if (!strcmp(k, "--snapshot") && nsnap < MAXN) snaps[nsnap++] = strcmp(v, "-") ? v : NULL;
        else if (!strcmp(k, "--prefix") && npre < MAXN) prefixes[npre++] = v;
        else if (!strcmp(k, "--heartbeat-timeout")) opt.heartbeat_timeout = atof(v);
        else if (!strcmp(k, "--count")) count = atol(v);
        else usage();
    }
    if (npub == 0) usage();
    for (size_t i = 0; i < npub; i++) eps[i].snapshot = i < nsnap ? snaps[i] : NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    ff_subscriber *s = ff_subscriber_new(eps, npub, prefixes, npre, &opt);
    if (!s) return 1;
    puts("{\"type\":\"ready\"}");
    long n = 0;
    while (!stop) {
        ff_msg *m = ff_subscriber_recv(s, 200);
        if (!m) continue;
        ff_msg_print_json(m, stdout);
        ff_msg_free(m);
        if (count > 0 && ++n >= count) break;
    }
    ff_subscriber_print_books(s, stdout);
    const uint64_t *c = ff_subscriber_counters(s);
    fputs("{\"type\":\"end\",\"counters\":{", stdout);
    for (int i = 0; i < FFC_N; i++) printf("%s\"%s\":%llu", i ? "," : "", ff_counter_names[i], (unsigned long long)c[i]);
    puts("}}");
    ff_subscriber_close(s);
    return 0;
}
