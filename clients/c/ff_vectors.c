/*
 * Checks the decoder against the shared test vectors (tests/vectors/wire_v1.json), given as
 * lines "name<TAB>expected<TAB>hex,hex,hex" by vectors_tsv.py: expected is INVALID or the
 * canonical JSON {"topic","header":{...},"event":{...}} the decoder must reproduce exactly.
 * Prints one line per failure and a summary; exit status 0 only when all pass.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include "ff.h"

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t unhex(const char *h, size_t n, unsigned char *out) {
    size_t k = 0;
    for (size_t i = 0; i + 1 < n; i += 2) out[k++] = (unsigned char)(hexval(h[i]) * 16 + hexval(h[i + 1]));
    return k;
}

static char *describe(const ff_msg *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const ff_header *h = &m->header;
    fputs("{\"topic\":", f);
    ff_json_str(f, m->topic, strlen(m->topic));
    fputs(",\"header\":{\"version\":1,\"gateway\":", f);
    ff_json_str(f, h->gateway, strlen(h->gateway));
    fprintf(f, ",\"epoch\":%llu,\"seq\":%llu,\"timestamp\":", (unsigned long long)h->epoch, (unsigned long long)h->seq);
    if (h->has_timestamp) fprintf(f, "%lld", (long long)h->timestamp);
    else fputs("null", f);
    fprintf(f, ",\"receipt_timestamp\":%lld,\"publish_timestamp\":%lld},\"event\":", (long long)h->receipt_timestamp,
            (long long)h->publish_timestamp);
    ff_event_print_json(m, f);
    fputc('}', f);
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    FILE *in = argc > 1 ? fopen(argv[1], "r") : stdin;
    if (!in) { perror(argv[1]); return 2; }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int pass = 0, fail = 0;
    while ((got = getline(&line, &cap, in)) > 0) {
        if (line[got - 1] == '\n') line[--got] = 0;
        char *name = line, *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        if (!tab2) { fprintf(stderr, "bad line: %s\n", line); return 2; }
        *tab1 = 0;
        *tab2 = 0;
        const char *expected = tab1 + 1, *hex = tab2 + 1;
        ff_frame frames[16];
        unsigned char *bufs[16];
        size_t n = 0;
        const char *p = hex;
        while (n < 16) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            bufs[n] = malloc(l / 2 + 1);
            frames[n].size = unhex(p, l, bufs[n]);
            frames[n].data = bufs[n];
            n++;
            if (!e) break;
            p = e + 1;
        }
        ff_msg *m = NULL;
        char err[256];
        int rc = ff_decode(frames, n, &m, err, sizeof err);
        if (!strcmp(expected, "INVALID")) {
            if (rc == FF_OK) { printf("FAIL %s: accepted an invalid message\n", name); fail++; }
            else pass++;
        } else if (rc != FF_OK) {
            printf("FAIL %s: refused: %s\n", name, err);
            fail++;
        } else {
            char *d = describe(m);
            if (strcmp(d, expected)) { printf("FAIL %s:\n  got      %s\n  expected %s\n", name, d, expected); fail++; }
            else pass++;
            free(d);
        }
        ff_msg_free(m);
        for (size_t i = 0; i < n; i++) free(bufs[i]);
    }
    free(line);
    printf("%d passed, %d failed\n", pass, fail);
    return fail ? 1 : 0;
}
