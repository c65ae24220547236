/*
 * feedfabric client for C: wire v1 decoding (docs/wire.md), the snapshot-service
 * recovery protocol and validated L2 books, on libzmq and msgpack-c.
 *
 *   ff_endpoint ep = {"ipc:///run/ff/binance.pub", "ipc:///run/ff/binance.snap"};
 *   const char *prefixes[] = {"book.BINANCE.", "trades.BINANCE."};
 *   ff_subscriber *s = ff_subscriber_new(&ep, 1, prefixes, 2, NULL);
 *   for (;;) {
 *       ff_msg *m = ff_subscriber_recv(s, 1000);      // NULL on timeout
 *       if (m) { ff_msg_print_json(m, stdout); ff_msg_free(m); }
 *   }
 *
 * Integers: epoch and seq are uint64, timestamps int64 ns. Decimals stay the exact
 * strings the publisher sent (ff_dec_cmp compares them numerically).
 */
#ifndef FF_H
#define FF_H

#include <stdint.h>
#include <stdio.h>
#include <msgpack.h>
#include "ff_types.h"

#define FF_WIRE_VERSION 1
#define FF_MAX_FRAME (16u * 1024u * 1024u)
#define FF_MAX_TOPIC 512

/* ---- decoding -------------------------------------------------------------------- */

typedef struct {
    int version;
    char *gateway;
    uint64_t epoch;
    uint64_t seq;
    int has_timestamp;
    int64_t timestamp;
    int64_t receipt_timestamp;
    int64_t publish_timestamp;
} ff_header;

typedef struct ff_msg {
    char *topic;
    ff_header header;
    const ff_kind *kind;
    msgpack_object body;     /* the body map; valid while the message lives */
    int local;               /* made by the subscriber (Gap, Reset, Status): seq 0 */
    /* private */
    char *body_raw;
    size_t body_len;
    msgpack_unpacked body_unpacked;
    struct ff_msg *next;
} ff_msg;

typedef struct {
    const void *data;
    size_t size;
} ff_frame;

/* Error codes of ff_decode. */
enum { FF_OK = 0, FF_INVALID = 1, FF_UNKNOWN_KIND = 2, FF_BAD_VERSION = 3 };

/* Decode [topic, header, body]; returns FF_OK and a new message (free with ff_msg_free),
 * or an error code with a message in err. Never crashes on any input. */
int ff_decode(const ff_frame *frames, size_t nframes, ff_msg **out, char *err, size_t errlen);
void ff_msg_free(ff_msg *m);

/* A body field by name (NULL when absent; a MSGPACK_OBJECT_NIL when nil). */
const msgpack_object *ff_get(const ff_msg *m, const char *name);
/* The kind table entry for a kind name (NULL if unknown). */
const ff_kind *ff_kind_by_name(const char *kind, size_t len);

/* ---- decimals -------------------------------------------------------------------- */

int ff_dec_valid(const char *s, size_t n);               /* the plain-decimal grammar */
int ff_dec_cmp(const char *a, size_t an, const char *b, size_t bn); /* -1, 0, 1 numerically */
int ff_dec_is_zero(const char *s, size_t n);

/* ---- books ----------------------------------------------------------------------- */

typedef struct {
    char *price;
    char *size;
} ff_level;

typedef struct {
    ff_level *v;    /* ascending by price */
    size_t n, cap;
    int descending; /* bids: best = highest */
} ff_side;

typedef struct {
    ff_side bids, asks;
    int has_sequence;
    int64_t sequence;
} ff_book;

void ff_book_init(ff_book *b);
void ff_book_clear(ff_book *b);
/* Apply a book_snapshot (replace) or book_delta (size 0 deletes) body. */
void ff_book_apply(ff_book *b, const ff_msg *m);
/* i-th level from the best (NULL past the end). */
const ff_level *ff_side_at(const ff_side *s, size_t i);

/* ---- canonical JSON (docs/clients.md) ---------------------------------------------- */

void ff_msg_print_json(const ff_msg *m, FILE *f);
void ff_event_print_json(const ff_msg *m, FILE *f);
void ff_book_print_json(const char *gateway, const char *topic, const ff_book *b, FILE *f);
void ff_json_str(FILE *f, const char *s, size_t n);

/* ---- subscriber ------------------------------------------------------------------ */

typedef struct {
    const char *pub;
    const char *snapshot; /* NULL: no snapshot service */
} ff_endpoint;

typedef struct {
    int books;               /* default 1: maintain book./l3. topics through the snapshot service */
    double heartbeat_timeout; /* seconds, default 3 */
    double request_timeout;   /* seconds, default 2 */
    int rcvhwm;              /* default 100000 */
} ff_options;

typedef struct ff_subscriber ff_subscriber;

enum {
    FFC_MESSAGES, FFC_DELIVERED, FFC_JUNK, FFC_UNKNOWN_KIND, FFC_GAPS, FFC_RESYNCS, FFC_DUPLICATES,
    FFC_OLD_EPOCH, FFC_EPOCHS, FFC_BUFFER_OVERFLOWS, FFC_SNAPSHOT_REQUESTS, FFC_SNAPSHOT_TIMEOUTS,
    FFC_SNAPSHOT_JUNK, FFC_STALE, FFC_CONTROL_GAPS, FFC_N
};
extern const char *const ff_counter_names[FFC_N];

ff_subscriber *ff_subscriber_new(const ff_endpoint *eps, size_t neps, const char *const *prefixes,
                                 size_t nprefixes, const ff_options *opt);
/* The next message (free with ff_msg_free) or NULL when timeout_ms passes (-1: wait). */
ff_msg *ff_subscriber_recv(ff_subscriber *s, int timeout_ms);
/* The book of exchange/symbol as of the last message handed out by ff_subscriber_recv
 * (NULL while unknown or being resynced). */
const ff_book *ff_subscriber_book(const ff_subscriber *s, const char *exchange, const char *symbol);
const uint64_t *ff_subscriber_counters(const ff_subscriber *s);
/* Print every book as a canonical JSON line (sorted by topic, then gateway). */
void ff_subscriber_print_books(const ff_subscriber *s, FILE *f);
void ff_subscriber_close(ff_subscriber *s);

#endif
