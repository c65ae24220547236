/*
 * The subscriber: per-topic sequence tracking, snapshot-service recovery and validated L2
 * books, following docs/wire.md ("Snapshot service, heartbeats and recovery") exactly as
 * the Python reference (bus/subscriber.py SubscriberCore) does, so that both deliver
 * identical streams. See clients/node/lib/core.js for the same machine in JavaScript.
 *
 * - per (gateway, topic) the sequence grows by exactly 1; a jump is a gap, a smaller or
 *   equal number a duplicate (dropped);
 * - book./l3. topics start from the snapshot service: messages are buffered until the
 *   snapshot arrives, those at or below its sequence dropped, the rest applied; a gap yields
 *   a Gap message, invalidates the book, re-requests the snapshot, then yields Reset + the
 *   fresh book_snapshot; a topic whose first message has sequence 1 needs no snapshot;
 * - a new epoch invalidates all state of that gateway; a gateway silent for
 *   heartbeat_timeout yields Status 'stale' ('connected' when it speaks again);
 * - a heartbeat's counters.book_seqs reveals books whose last messages were lost, and its
 *   counters.book_invalid a publisher gap that was lost (the gap. topics of the books kept are
 *   subscribed whether the user asked for them or not: subscribe_gaps);
 * - malformed frames are counted and skipped, never fatal.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>
#include "ff.h"

#define TBUCKETS 256
#define MAX_FRAMES 8

const char *const ff_counter_names[FFC_N] = {
    "messages", "delivered", "junk", "unknown_kind", "gaps", "resyncs", "duplicates", "old_epoch", "epochs",
    "buffer_overflows", "snapshot_requests", "snapshot_timeouts", "snapshot_junk", "stale",
    "control_gaps"};

typedef struct {
    ff_msg *head, *tail;
    size_t n;
} msgq;

static void q_push(msgq *q, ff_msg *m) {
    m->next = NULL;
    if (q->tail) q->tail->next = m;
    else q->head = m;
    q->tail = m;
    q->n++;
}

static ff_msg *q_pop(msgq *q) {
    ff_msg *m = q->head;
    if (!m) return NULL;
    q->head = m->next;
    if (!q->head) q->tail = NULL;
    q->n--;
    m->next = NULL;
    return m;
}

static void q_free(msgq *q) {
    ff_msg *m;
    while ((m = q_pop(q))) ff_msg_free(m);
}

typedef struct topic_st {
    char *topic;
    int stateful, live, had_valid;
    uint64_t seq;
    /* our seq when the publisher's own gap of this book reached us: a heartbeat listing the book
       invalid at another seq means we lost that gap (check_tails) */
    int has_gap_seen;
    uint64_t gap_seen_at;
    /* the seq of the snapshot reply the book went live from, while it is still our seq (no message
       of the stream has followed it yet): see publisher_gap */
    int has_reply_seq;
    uint64_t reply_seq;
    msgq buffer;
    char *channel, *exchange, *symbol; /* components of the topic; symbol NULL when absent */
    struct topic_st *hnext, *onext;
} topic_st;

typedef struct gw_st {
    char *name;
    uint64_t epoch;
    double last_seen;
    int stale, need_snapshot, seen_on_sub, endpoint;
    topic_st *buckets[TBUCKETS];
    topic_st *first, *last; /* insertion order */
    struct gw_st *next;
} gw_st;

typedef struct request {
    char rid[24];
    int endpoint, hello;
    char *gateway; /* NULL for HELLO */
    char *prefix;
    double deadline;
    msgq items;
    struct request *next;
} request;

/* The books of the messages the user has received, in the order received: book_snapshot
 * replaces a book, book_delta updates it, a Gap on a book channel drops it. A book thus
 * always matches the last message handed out, never messages decoded ahead of it. */
typedef struct kept_book {
    char *topic, *gateway;
    ff_book book;
    struct kept_book *next;
} kept_book;

struct ff_subscriber {
    void *ctx, *sub;
    void **dealers;
    size_t ndealers;
    char **prefixes;
    size_t nprefixes;
    int books, deliver_heartbeats;
    double hb_timeout, req_timeout;
    size_t max_buffer;
    uint64_t counters[FFC_N];
    gw_st *gateways, *gateways_last;
    request *requests;
    unsigned long next_rid;
    msgq out;
    kept_book *kept;
    zmq_pollitem_t *items; /* SUB, then each DEALER */
};

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (!p) abort();
    memcpy(p, s, n + 1);
    return p;
}

static uint32_t fnv(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* ---- topics and gateways --------------------------------------------------------- */

static topic_st *topic_find(gw_st *gw, const char *topic) {
    for (topic_st *t = gw->buckets[fnv(topic) % TBUCKETS]; t; t = t->hnext)
        if (strcmp(t->topic, topic) == 0) return t;
    return NULL;
}

static int channel_stateful(const char *topic) {
    return strncmp(topic, "book.", 5) == 0 || strncmp(topic, "l3.", 3) == 0;
}

static int channel_control(const char *topic) {
    return strncmp(topic, "heartbeat.", 10) == 0 || strncmp(topic, "status.", 7) == 0 ||
           strncmp(topic, "gap.", 4) == 0 || strncmp(topic, "reset.", 6) == 0;
}

static char *obj_strdup(const msgpack_object *o) {
    char *p = malloc(o->via.str.size + 1);
    if (!p) abort();
    memcpy(p, o->via.str.ptr, o->via.str.size);
    p[o->via.str.size] = 0;
    return p;
}

/* A non-empty str field of the event, as a new string (NULL otherwise). */
static char *event_name(const ff_msg *m, const char *field) {
    const msgpack_object *o = m ? ff_get(m, field) : NULL;
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size > 0 ? obj_strdup(o) : NULL;
}

static topic_st *topic_add(gw_st *gw, const char *topic, int stateful, const ff_msg *event) {
    topic_st *t = calloc(1, sizeof *t);
    if (!t) abort();
    t->topic = xstrdup(topic);
    t->stateful = stateful;
    /* channel.exchange.symbol from the topic (escaped components, as the reference does) */
    char *parts = xstrdup(topic);
    parts[strlen(parts) - 1] = 0;
    char *save = NULL, *p[3] = {NULL, NULL, NULL};
    char *tok = strtok_r(parts, ".", &save);
    for (int i = 0; i < 3 && tok; i++, tok = strtok_r(NULL, ".", &save)) p[i] = tok;
    t->channel = xstrdup(p[0] ? p[0] : "");
    /* Names for Gap/Reset events: the event's own (topic keys are escaped), else the topic's. */
    t->exchange = event_name(event, "exchange");
    if (!t->exchange) t->exchange = xstrdup(p[1] ? p[1] : "");
    t->symbol = event_name(event, "symbol");
    if (!t->symbol && p[2]) t->symbol = xstrdup(p[2]);
    free(parts);
    uint32_t b = fnv(topic) % TBUCKETS;
    t->hnext = gw->buckets[b];
    gw->buckets[b] = t;
    if (gw->last) gw->last->onext = t;
    else gw->first = t;
    gw->last = t;
    return t;
}


static gw_st *gw_find(ff_subscriber *s, const char *name) {
    for (gw_st *g = s->gateways; g; g = g->next)
        if (strcmp(g->name, name) == 0) return g;
    return NULL;
}

/* ---- locally made messages (seq 0) ------------------------------------------------ */

static void pk_str(msgpack_packer *pk, const char *v) {
    if (!v) { msgpack_pack_nil(pk); return; }
    size_t n = strlen(v);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, v, n);
}

static void pk_opt_u64(msgpack_packer *pk, int has, uint64_t v) {
    if (has) msgpack_pack_uint64(pk, v);
    else msgpack_pack_nil(pk);
}

static void topic_append(char *buf, size_t cap, const char *v) {
    size_t len = strlen(buf);
    if (!v) v = "_";
    for (; *v && len + 2 < cap; v++) buf[len++] = (*v == '.' || *v == ' ') ? '_' : *v;
    buf[len++] = '.';
    buf[len] = 0;
}

/* The prefix of the topics a book or l3 gap declares invalid (bus/topics.py gap_scope): its book's
 * topic, or with a nil symbol (feed-wide) every topic of that channel and exchange. A complete
 * topic is a prefix of itself only, so one strncmp serves both. 0: a gap of another channel. */
static int gap_scope(const ff_msg *m, char *buf, size_t cap) {
    const msgpack_object *ch = ff_get(m, "channel"), *ex = ff_get(m, "exchange"), *sym = ff_get(m, "symbol");
    if (!ch || ch->type != MSGPACK_OBJECT_STR || !ex || ex->type != MSGPACK_OBJECT_STR) return 0;
    int book = ch->via.str.size == 4 && !memcmp(ch->via.str.ptr, "book", 4);
    if (!book && !(ch->via.str.size == 2 && !memcmp(ch->via.str.ptr, "l3", 2))) return 0;
    char *exs = obj_strdup(ex), *syms = sym && sym->type == MSGPACK_OBJECT_STR ? obj_strdup(sym) : NULL;
    snprintf(buf, cap, "%s.", book ? "book" : "l3");
    topic_append(buf, cap, exs);
    if (syms) topic_append(buf, cap, syms);
    free(exs);
    free(syms);
    return 1;
}

static void emit_local(ff_subscriber *s, gw_st *gw, const char *topic, msgpack_sbuffer *body) {
    msgpack_sbuffer hb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&hb);
    msgpack_packer_init(&pk, &hb, msgpack_sbuffer_write);
    int64_t now = wall_ns();
    msgpack_pack_array(&pk, 7);
    msgpack_pack_int(&pk, FF_WIRE_VERSION);
    pk_str(&pk, gw->name);
    msgpack_pack_uint64(&pk, gw->epoch);
    msgpack_pack_uint64(&pk, 0);
    msgpack_pack_nil(&pk);
    msgpack_pack_int64(&pk, now);
    msgpack_pack_int64(&pk, now);
    ff_frame f[3] = {{topic, strlen(topic)}, {hb.data, hb.size}, {body->data, body->size}};
    ff_msg *m = NULL;
    char err[200];
    if (ff_decode(f, 3, &m, err, sizeof err) == FF_OK) {
        m->local = 1;
        q_push(&s->out, m);
    } else {
        fprintf(stderr, "feedfabric: internal error building a local message: %s\n", err);
    }
    msgpack_sbuffer_destroy(&hb);
}

static void emit_status(ff_subscriber *s, gw_st *gw, const char *state, const char *reason) {
    msgpack_sbuffer b;
    msgpack_packer pk;
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pk_str(&pk, "kind"); pk_str(&pk, "status");
    pk_str(&pk, "exchange"); pk_str(&pk, gw->name);
    pk_str(&pk, "feed"); pk_str(&pk, "gateway");
    pk_str(&pk, "state"); pk_str(&pk, state);
    pk_str(&pk, "reason"); pk_str(&pk, reason);
    char topic[FF_MAX_TOPIC + 8] = "status.";
    topic_append(topic, sizeof topic, gw->name);
    topic_append(topic, sizeof topic, "gateway");
    emit_local(s, gw, topic, &b);
    msgpack_sbuffer_destroy(&b);
}

static void emit_gap_or_reset(ff_subscriber *s, gw_st *gw, topic_st *t, int gap, int has_exp, uint64_t expected,
                              int has_rcv, uint64_t received, const char *reason) {
    msgpack_sbuffer b;
    msgpack_packer pk;
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, gap ? 7 : 5);
    pk_str(&pk, "kind"); pk_str(&pk, gap ? "gap" : "reset");
    pk_str(&pk, "exchange"); pk_str(&pk, t->exchange);
    pk_str(&pk, "symbol"); pk_str(&pk, t->symbol);
    pk_str(&pk, "channel"); pk_str(&pk, t->channel);
    if (gap) {
        pk_str(&pk, "expected"); pk_opt_u64(&pk, has_exp, expected);
        pk_str(&pk, "received"); pk_opt_u64(&pk, has_rcv, received);
        s->counters[FFC_GAPS]++;
    }
    pk_str(&pk, "reason"); pk_str(&pk, reason);
    char topic[FF_MAX_TOPIC + 8];
    strcpy(topic, gap ? "gap." : "reset.");
    topic_append(topic, sizeof topic, t->exchange);
    topic_append(topic, sizeof topic, t->symbol);
    emit_local(s, gw, topic, &b);
    msgpack_sbuffer_destroy(&b);
}

/* ---- snapshot requests ----------------------------------------------------------- */

static void send_request(ff_subscriber *s, int endpoint, const char *gateway, int hello, const char *prefix, double now) {
    request *r = calloc(1, sizeof *r);
    if (!r) abort();
    snprintf(r->rid, sizeof r->rid, "%lu", ++s->next_rid);
    r->endpoint = endpoint;
    r->hello = hello;
    r->gateway = gateway ? xstrdup(gateway) : NULL;
    r->prefix = xstrdup(prefix);
    r->deadline = now + s->req_timeout;
    request **pp = &s->requests;
    while (*pp) pp = &(*pp)->next;
    *pp = r;
    void *d = s->dealers[endpoint];
    const char *kind = hello ? "HELLO" : "SNAPSHOT";
    /* A request that cannot be sent now is resent by its timeout. */
    if (zmq_send(d, kind, strlen(kind), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
        zmq_send(d, prefix, strlen(prefix), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
        zmq_send(d, r->rid, strlen(r->rid), ZMQ_DONTWAIT);
    if (!hello) s->counters[FFC_SNAPSHOT_REQUESTS]++;
}

static void request_free(request *r) {
    q_free(&r->items);
    free(r->gateway);
    free(r->prefix);
    free(r);
}

static void request_gateway(ff_subscriber *s, gw_st *gw, const char *const *prefixes, size_t n, double now) {
    if (gw->endpoint < 0) {
        gw->need_snapshot = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int covered = 0;
        for (request *r = s->requests; r && !covered; r = r->next)
            covered = r->gateway && !r->hello && strcmp(r->gateway, gw->name) == 0 &&
                      strncmp(prefixes[i], r->prefix, strlen(r->prefix)) == 0;
        if (!covered) send_request(s, gw->endpoint, gw->name, 0, prefixes[i], now);
    }
}

static void request_topic(ff_subscriber *s, gw_st *gw, const char *topic, double now) {
    const char *p[1] = {topic};
    request_gateway(s, gw, p, 1, now);
}

/* ---- the state machine ----------------------------------------------------------- */

static gw_st *gateway_for(ff_subscriber *s, const char *name, uint64_t epoch, double now) {
    gw_st *gw = gw_find(s, name);
    if (!gw) {
        gw = calloc(1, sizeof *gw);
        if (!gw) abort();
        gw->name = xstrdup(name);
        gw->epoch = epoch;
        gw->last_seen = now;
        gw->endpoint = -1;
        if (s->gateways_last) s->gateways_last->next = gw;
        else s->gateways = gw;
        s->gateways_last = gw;
        return gw;
    }
    if (epoch == gw->epoch) return gw;
    if (epoch < gw->epoch) {
        s->counters[FFC_OLD_EPOCH]++;
        return NULL;
    }
    /* The publisher restarted: its sequences and state start over. */
    s->counters[FFC_EPOCHS]++;
    for (topic_st *t = gw->first; t; t = t->onext) {
        if (t->stateful && t->live) {
            emit_gap_or_reset(s, gw, t, 1, 0, 0, 0, 0, "publisher restarted (new epoch)");
            t->had_valid = 1;
        }
        t->live = 0;
        t->seq = 0;
        q_free(&t->buffer);
    }
    gw->epoch = epoch;
    for (request **pp = &s->requests; *pp;) {
        request *r = *pp;
        if (r->gateway && strcmp(r->gateway, name) == 0) {
            *pp = r->next;
            request_free(r);
        } else {
            pp = &r->next;
        }
    }
    if (gw->seen_on_sub && s->books) request_gateway(s, gw, (const char *const *)s->prefixes, s->nprefixes, now);
    return gw;
}

static void invalidate(ff_subscriber *s, gw_st *gw, topic_st *t, double now) {
    t->live = 0;
    t->had_valid = 1;
    q_free(&t->buffer);
    s->counters[FFC_RESYNCS]++;
    request_topic(s, gw, t->topic, now);
}

/* Start t from `first` (a snapshot or sequence 1; ownership taken), then drain the buffer. */
static void go_live(ff_subscriber *s, gw_st *gw, topic_st *t, ff_msg *first) {
    if (t->had_valid) emit_gap_or_reset(s, gw, t, 0, 0, 0, 0, 0, "rebuilt from snapshot");
    t->live = 1;
    t->seq = first->header.seq;
    t->has_reply_seq = 0;
    q_push(&s->out, first);
    msgq buffered = t->buffer;
    memset(&t->buffer, 0, sizeof t->buffer);
    ff_msg *m;
    while ((m = q_pop(&buffered))) {
        uint64_t q = m->header.seq;
        if (q <= t->seq) { ff_msg_free(m); continue; }
        if (q != t->seq + 1) {
            emit_gap_or_reset(s, gw, t, 1, 1, t->seq + 1, 1, q, "sequence gap");
            invalidate(s, gw, t, gw->last_seen);
            q_push(&t->buffer, m);
            while ((m = q_pop(&buffered))) q_push(&t->buffer, m);
            return;
        }
        t->seq = q;
        q_push(&s->out, m);
    }
}

/* The live book of a heartbeat map's key (book_seqs, book_invalid), or NULL. */
static topic_st *listed_book(gw_st *gw, const msgpack_object *k, const msgpack_object *v) {
    if (k->type != MSGPACK_OBJECT_STR || k->via.str.size > FF_MAX_TOPIC || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return NULL;
    char name[FF_MAX_TOPIC + 1];
    memcpy(name, k->via.str.ptr, k->via.str.size);
    name[k->via.str.size] = 0;
    topic_st *t = topic_find(gw, name);
    return t && t->stateful && t->live ? t : NULL;
}

static void check_tails(ff_subscriber *s, gw_st *gw, const ff_msg *hb, double now) {
    const msgpack_object *c = ff_get(hb, "counters");
    const msgpack_object *seqs = NULL, *invalid = NULL;
    for (uint32_t i = 0; c && i < c->via.map.size; i++) {
        const msgpack_object *k = &c->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 9 && memcmp(k->via.str.ptr, "book_seqs", 9) == 0)
            seqs = &c->via.map.ptr[i].val;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 12 && memcmp(k->via.str.ptr, "book_invalid", 12) == 0)
            invalid = &c->via.map.ptr[i].val;
    }
    for (uint32_t i = 0; seqs && seqs->type == MSGPACK_OBJECT_MAP && i < seqs->via.map.size; i++) {
        const msgpack_object *v = &seqs->via.map.ptr[i].val;
        topic_st *t = listed_book(gw, &seqs->via.map.ptr[i].key, v);
        if (t && v->via.u64 > t->seq) {
            emit_gap_or_reset(s, gw, t, 1, 1, t->seq + 1, 1, v->via.u64, "tail loss (seen in heartbeat)");
            invalidate(s, gw, t, now);
        } else if (t && t->has_reply_seq && v->via.u64 >= t->reply_seq) {
            t->has_reply_seq = 0;   /* the stream has passed the reply's state: a gap read from now is newer */
        }
    }
    /* A live book the publisher lists as invalid, whose gap we did not see at that point of its
       stream: we lost that gap (an invalid book publishes nothing that would reveal it). */
    for (uint32_t i = 0; invalid && invalid->type == MSGPACK_OBJECT_MAP && i < invalid->via.map.size; i++) {
        const msgpack_object *v = &invalid->via.map.ptr[i].val;
        topic_st *t = listed_book(gw, &invalid->via.map.ptr[i].key, v);
        if (t && t->seq <= v->via.u64 && !(t->has_gap_seen && t->gap_seen_at == v->via.u64)) {
            emit_gap_or_reset(s, gw, t, 1, 0, 0, 0, 0, "publisher gap lost (seen in heartbeat)");
            invalidate(s, gw, t, now);
        }
    }
}

/* The publisher announced books invalid (on_delivered drops them): note where each one's stream
 * stood, so that a heartbeat's book_invalid is not taken for a lost gap. A book live from a
 * snapshot reply that no stream message (nor heartbeat) has shown the stream past yet may hold a
 * state newer than this gap (the reply overtook the stream): it is rebuilt from a fresh snapshot,
 * as the stream's rebuild of it is older (bus/subscriber.py, _publisher_gap). */
static void publisher_gap(ff_subscriber *s, gw_st *gw, const ff_msg *m, double now) {
    char scope[2 * FF_MAX_TOPIC + 16];
    if (!gap_scope(m, scope, sizeof scope)) return;
    size_t n = strlen(scope);
    for (topic_st *t = gw->first; t; t = t->onext) {
        if (strncmp(t->topic, scope, n)) continue;
        t->has_gap_seen = 1;
        t->gap_seen_at = t->seq;
        if (t->live && t->has_reply_seq && t->seq == t->reply_seq) invalidate(s, gw, t, now);
    }
}

static void junk(ff_subscriber *s, int counter, const char *err) {
    uint64_t n = ++s->counters[counter];
    if (n <= 10 || n % 1000 == 0)
        fprintf(stderr, "feedfabric: skipping malformed frames (%llu so far): %s\n", (unsigned long long)n, err);
}

static void on_sub(ff_subscriber *s, const ff_frame *frames, size_t n, double now) {
    ff_msg *m = NULL;
    char err[256];
    int rc = ff_decode(frames, n, &m, err, sizeof err);
    if (rc != FF_OK) {
        junk(s, rc == FF_UNKNOWN_KIND ? FFC_UNKNOWN_KIND : FFC_JUNK, err);
        return;
    }
    s->counters[FFC_MESSAGES]++;
    gw_st *gw = gateway_for(s, m->header.gateway, m->header.epoch, now);
    if (!gw) { ff_msg_free(m); return; }
    gw->last_seen = now;
    if (gw->stale) {
        gw->stale = 0;
        emit_status(s, gw, "connected", "messages resumed");
    }
    if (!gw->seen_on_sub) {
        gw->seen_on_sub = 1;
        /* This gateway's stream flows, so our subscriptions are active: a snapshot asked
         * for now is guaranteed to connect to what we receive next. */
        if (s->books) request_gateway(s, gw, (const char *const *)s->prefixes, s->nprefixes, now);
    }
    topic_st *t = topic_find(gw, m->topic);
    if (!t) t = topic_add(gw, m->topic, s->books && channel_stateful(m->topic), m);
    uint64_t seq = m->header.seq;
    if (!t->stateful) {
        if (t->seq == 0 || seq == t->seq + 1) {
            t->seq = seq;
        } else if (seq <= t->seq) {
            s->counters[FFC_DUPLICATES]++;
            ff_msg_free(m);
            return;
        } else {
            /* A gap in a control topic is counted only: a Gap with a nil symbol would declare a
               whole feed invalid. */
            if (channel_control(m->topic)) s->counters[FFC_CONTROL_GAPS]++;
            else emit_gap_or_reset(s, gw, t, 1, 1, t->seq + 1, 1, seq, "sequence gap");
            t->seq = seq;
        }
        if (strcmp(m->kind->kind, "heartbeat") == 0) {
            check_tails(s, gw, m, now);
            if (!s->deliver_heartbeats) { ff_msg_free(m); return; }
        } else if (s->books && strcmp(m->kind->kind, "gap") == 0) {
            publisher_gap(s, gw, m, now);
        }
        q_push(&s->out, m);
        return;
    }
    if (t->live) {
        if (seq == t->seq + 1) {
            t->seq = seq;
            q_push(&s->out, m);
        } else if (seq <= t->seq) {
            s->counters[FFC_DUPLICATES]++;
            ff_msg_free(m);
        } else {
            emit_gap_or_reset(s, gw, t, 1, 1, t->seq + 1, 1, seq, "sequence gap");
            invalidate(s, gw, t, now);
            q_push(&t->buffer, m);
        }
        return;
    }
    if (seq <= t->seq) {
        /* Older than the book we last held (a snapshot reply overtook the stream, then a gap read
           from the stream took the book: publisher_gap): the state is not to go back. */
        s->counters[FFC_DUPLICATES]++;
        ff_msg_free(m);
        return;
    }
    /* Not live: start from this message if nothing can precede it, else wait for a snapshot. */
    if (strcmp(m->kind->kind, "book_snapshot") == 0 || strcmp(m->kind->kind, "l3_snapshot") == 0 ||
        (seq == 1 && t->buffer.n == 0)) {
        q_free(&t->buffer);
        go_live(s, gw, t, m);
        return;
    }
    if (t->buffer.n >= s->max_buffer) {
        s->counters[FFC_BUFFER_OVERFLOWS]++;
        q_free(&t->buffer);
    }
    q_push(&t->buffer, m);
    request_topic(s, gw, t->topic, now);
}

static int frame_is(const ff_frame *f, const char *s) {
    return f->size == strlen(s) && memcmp(f->data, s, f->size) == 0;
}

static void on_snapshot(ff_subscriber *s, int endpoint, const ff_frame *frames, size_t n, double now) {
    char err[256];
    if (n == 0 || frames[0].size >= sizeof ((request *)0)->rid) { junk(s, FFC_SNAPSHOT_JUNK, "snapshot reply: bad request id"); return; }
    char rid[24];
    memcpy(rid, frames[0].data, frames[0].size);
    rid[frames[0].size] = 0;
    ff_msg *item = NULL;
    int is_end = 0;
    uint64_t count = 0, epoch = 0;
    char *gwname = NULL;
    if (n == 4) {
        if (ff_decode(frames + 1, 3, &item, err, sizeof err) != FF_OK) { junk(s, FFC_SNAPSHOT_JUNK, err); return; }
    } else if (n == 3 && frame_is(&frames[1], "END")) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        int ok = msgpack_unpack_next(&u, frames[2].data, frames[2].size, &off) == MSGPACK_UNPACK_SUCCESS;
        const msgpack_object *o = &u.data;
        ok = ok && o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size >= 4 &&
             o->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.array.ptr[0].via.u64 == FF_WIRE_VERSION &&
             o->via.array.ptr[1].type == MSGPACK_OBJECT_STR && o->via.array.ptr[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
             o->via.array.ptr[3].type == MSGPACK_OBJECT_POSITIVE_INTEGER;
        if (ok) {
            const msgpack_object *g = &o->via.array.ptr[1];
            gwname = malloc(g->via.str.size + 1);
            if (!gwname) abort();
            memcpy(gwname, g->via.str.ptr, g->via.str.size);
            gwname[g->via.str.size] = 0;
            epoch = o->via.array.ptr[2].via.u64;
            count = o->via.array.ptr[3].via.u64;
            is_end = 1;
        }
        msgpack_unpacked_destroy(&u);
        if (!ok) { junk(s, FFC_SNAPSHOT_JUNK, "snapshot end marker: expected [version, gateway, epoch, count]"); return; }
    } else {
        junk(s, FFC_SNAPSHOT_JUNK, n == 3 && frame_is(&frames[1], "ERROR") ? "snapshot service error" : "snapshot reply: unexpected shape");
        return;
    }
    request **pp = &s->requests;
    while (*pp && strcmp((*pp)->rid, rid) != 0) pp = &(*pp)->next;
    request *r = *pp;
    if (!r || r->endpoint != endpoint) { /* a late answer to a request we retried or abandoned */
        ff_msg_free(item);
        free(gwname);
        return;
    }
    if (!is_end) {
        if (r->items.n < s->max_buffer) q_push(&r->items, item);
        else ff_msg_free(item);
        return;
    }
    *pp = r->next;
    gw_st *known = gw_find(s, gwname);
    if (known) known->endpoint = endpoint;
    gw_st *gw = gateway_for(s, gwname, epoch, now);
    free(gwname);
    if (gw) gw->endpoint = endpoint;
    if (!gw || r->hello) {
        if (gw && gw->need_snapshot) {
            gw->need_snapshot = 0;
            request_gateway(s, gw, (const char *const *)s->prefixes, s->nprefixes, now);
        }
        request_free(r);
        return;
    }
    if (r->items.n != count) {
        s->counters[FFC_SNAPSHOT_JUNK]++;
        send_request(s, endpoint, gw->name, r->hello, r->prefix, now);
        request_free(r);
        return;
    }
    /* Topics the reply covered (to find those we wait for that the publisher did not have). */
    char **seen = calloc(r->items.n + 1, sizeof *seen);
    size_t nseen = 0;
    if (!seen) abort();
    ff_msg *m;
    while ((m = q_pop(&r->items))) {
        if (strcmp(m->header.gateway, gw->name) != 0 || m->header.epoch != gw->epoch) { ff_msg_free(m); continue; }
        seen[nseen++] = xstrdup(m->topic);
        topic_st *t = topic_find(gw, m->topic);
        if (!t) t = topic_add(gw, m->topic, channel_stateful(m->topic), m);
        if (t->stateful) {
            if (!t->live && m->header.seq < t->seq) {
                /* Served before a state we held since (a reply read late, to a request that covered
                   a later resync too): the book is not to go back; ask again. */
                request_topic(s, gw, t->topic, now);
                ff_msg_free(m);
            } else if (!t->live) {
                uint64_t rs = m->header.seq;
                go_live(s, gw, t, m);
                if (t->live && t->seq == rs) {   /* nothing buffered followed it: the stream is behind */
                    t->has_reply_seq = 1;
                    t->reply_seq = rs;
                }
            } else {
                ff_msg_free(m);
            }
        } else if (t->seq == 0 || m->header.seq > t->seq) {
            /* A last value newer than anything we have (a late joiner's ticker/bbo/...). */
            t->seq = m->header.seq;
            q_push(&s->out, m);
        } else {
            ff_msg_free(m);
        }
    }
    size_t plen = strlen(r->prefix);
    for (topic_st *t = gw->first; t; t = t->onext) {
        if (!t->stateful || t->live || t->buffer.n == 0 || strncmp(t->topic, r->prefix, plen) != 0) continue;
        int was_seen = 0;
        for (size_t i = 0; i < nseen && !was_seen; i++) was_seen = strcmp(seen[i], t->topic) == 0;
        if (was_seen) continue;
        if (t->buffer.head->header.seq == 1) {
            ff_msg *first = q_pop(&t->buffer);
            go_live(s, gw, t, first);
        } else {
            request_topic(s, gw, t->topic, now);
        }
    }
    for (size_t i = 0; i < nseen; i++) free(seen[i]);
    free(seen);
    request_free(r);
}

static double next_deadline(const ff_subscriber *s, int *has) {
    double t = 0;
    *has = 0;
    for (const request *r = s->requests; r; r = r->next)
        if (!*has || r->deadline < t) { t = r->deadline; *has = 1; }
    for (const gw_st *g = s->gateways; g; g = g->next) {
        if (g->stale) continue;
        double d = g->last_seen + s->hb_timeout;
        if (!*has || d < t) { t = d; *has = 1; }
    }
    return t;
}

static void tick(ff_subscriber *s, double now) {
    /* Resend timed-out requests (in order; resent ones go to the end of the list). */
    request *expired = NULL, **tail = &expired;
    for (request **pp = &s->requests; *pp;) {
        request *r = *pp;
        if (now >= r->deadline) {
            *pp = r->next;
            r->next = NULL;
            *tail = r;
            tail = &r->next;
        } else {
            pp = &r->next;
        }
    }
    while (expired) {
        request *r = expired;
        expired = r->next;
        s->counters[FFC_SNAPSHOT_TIMEOUTS]++;
        send_request(s, r->endpoint, r->gateway, r->hello, r->prefix, now);
        request_free(r);
    }
    for (gw_st *g = s->gateways; g; g = g->next) {
        if (!g->stale && now - g->last_seen >= s->hb_timeout) {
            g->stale = 1;
            s->counters[FFC_STALE]++;
            char reason[64];
            snprintf(reason, sizeof reason, "no message for %g s", s->hb_timeout);
            emit_status(s, g, "stale", reason);
        }
    }
}

/* ---- the ZeroMQ driver ----------------------------------------------------------- */

static void on_delivered(ff_subscriber *s, const ff_msg *m);

/* Subscribe the gap. topics covering the books prefix ``p`` keeps, asked for or not (docs/wire.md,
 * "The publisher's own gaps"; bus/subscriber.py gap_prefixes): a publisher's gap makes its book
 * invalid until the rebuild, which a client of book. alone would not learn. */
static void subscribe_gaps(void *sub, const char *p) {
    char buf[FF_MAX_TOPIC + 16];
    const char *rest;
    size_t n = strlen(p);
    if (!strncmp(p, "book.", 5)) rest = p + 5;
    else if (!strncmp(p, "l3.", 3)) rest = p + 3;
    else if ((n <= 5 && !strncmp("book.", p, n)) || (n <= 3 && !strncmp("l3.", p, n))) rest = "";
    else return;
    snprintf(buf, sizeof buf, "gap.%s", rest);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, buf, strlen(buf));
    const char *dot = strchr(rest, '.');
    if (dot && dot[1]) { /* one symbol's books: the exchange's feed-wide gaps too */
        snprintf(buf, sizeof buf, "gap.%.*s._.", (int)(dot - rest), rest);
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, buf, strlen(buf));
    }
}

static int wanted(const ff_subscriber *s, const char *topic) {
    for (size_t i = 0; i < s->nprefixes; i++)
        if (!strncmp(topic, s->prefixes[i], strlen(s->prefixes[i]))) return 1;
    return 0;
}

ff_subscriber *ff_subscriber_new(const ff_endpoint *eps, size_t neps, const char *const *prefixes,
                                 size_t nprefixes, const ff_options *opt) {
    static const char *const everything[] = {""};
    if (neps == 0) return NULL;
    if (nprefixes == 0) { prefixes = everything; nprefixes = 1; }
    ff_subscriber *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->books = opt ? opt->books : 1;
    s->hb_timeout = opt && opt->heartbeat_timeout > 0 ? opt->heartbeat_timeout : 3.0;
    s->req_timeout = opt && opt->request_timeout > 0 ? opt->request_timeout : 2.0;
    int hwm = opt && opt->rcvhwm > 0 ? opt->rcvhwm : 100000;
    s->max_buffer = 100000;
    s->prefixes = calloc(nprefixes, sizeof *s->prefixes);
    if (!s->prefixes) abort();
    for (size_t i = 0; i < nprefixes; i++) {
        int dup = 0;
        for (size_t j = 0; j < s->nprefixes; j++) dup |= strcmp(s->prefixes[j], prefixes[i]) == 0;
        if (dup) continue;
        s->prefixes[s->nprefixes++] = xstrdup(prefixes[i]);
        const char *p = prefixes[i];
        if (strncmp("heartbeat.", p, strlen(p)) == 0 || strncmp(p, "heartbeat.", 10) == 0) s->deliver_heartbeats = 1;
    }
    s->ctx = zmq_ctx_new();
    s->sub = zmq_socket(s->ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(s->sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->sub, ZMQ_LINGER, &zero, sizeof zero);
    for (size_t i = 0; i < s->nprefixes; i++) zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, s->prefixes[i], strlen(s->prefixes[i]));
    zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, "heartbeat.", 10);
    if (s->books)
        for (size_t i = 0; i < s->nprefixes; i++) subscribe_gaps(s->sub, s->prefixes[i]);
    for (size_t i = 0; i < neps; i++) {
        if (zmq_connect(s->sub, eps[i].pub) != 0) {
            fprintf(stderr, "feedfabric: cannot connect to %s: %s\n", eps[i].pub, zmq_strerror(zmq_errno()));
            ff_subscriber_close(s);
            return NULL;
        }
    }
    s->dealers = calloc(neps, sizeof *s->dealers);
    if (!s->dealers) abort();
    for (size_t i = 0; i < neps; i++) {
        if (!eps[i].snapshot || !s->books) continue;
        void *d = zmq_socket(s->ctx, ZMQ_DEALER);
        /* Replies are bounded by our own requests: never drop half of one. */
        zmq_setsockopt(d, ZMQ_RCVHWM, &zero, sizeof zero);
        zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_connect(d, eps[i].snapshot) != 0) {
            fprintf(stderr, "feedfabric: cannot connect to %s: %s\n", eps[i].snapshot, zmq_strerror(zmq_errno()));
            zmq_close(d);
            ff_subscriber_close(s);
            return NULL;
        }
        s->dealers[s->ndealers++] = d;
    }
    s->items = calloc(s->ndealers + 1, sizeof *s->items);
    if (!s->items) abort();
    s->items[0].socket = s->sub;
    s->items[0].events = ZMQ_POLLIN;
    for (size_t i = 0; i < s->ndealers; i++) {
        s->items[i + 1].socket = s->dealers[i];
        s->items[i + 1].events = ZMQ_POLLIN;
    }
    double now = monotonic();
    if (s->books)
        for (size_t i = 0; i < s->ndealers; i++) send_request(s, (int)i, NULL, 1, "", now);
    return s;
}

/* Read one multipart message (non-blocking); returns the frame count, 0 when none. */
static size_t read_multipart(void *sock, zmq_msg_t *msgs, ff_frame *frames) {
    size_t n = 0, total = 0;
    int more = 1;
    while (more) {
        zmq_msg_t tmp, *m = n < MAX_FRAMES ? &msgs[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, total == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            return total;
        }
        more = zmq_msg_more(m);
        if (n < MAX_FRAMES) {
            frames[n].data = zmq_msg_data(m);
            frames[n].size = zmq_msg_size(m);
            n++;
        } else {
            zmq_msg_close(m);
        }
        total++;
    }
    return total;
}

static void pump(ff_subscriber *s, const zmq_pollitem_t *items) {
    zmq_msg_t msgs[MAX_FRAMES];
    ff_frame frames[MAX_FRAMES];
    double now = monotonic();
    for (size_t i = 0; i <= s->ndealers; i++) {
        if (!(items[i].revents & ZMQ_POLLIN)) continue;
        for (int k = 0; k < 1000; k++) {
            size_t n = read_multipart(items[i].socket, msgs, frames);
            if (n == 0) break;
            if (i == 0) on_sub(s, frames, n, now);
            else on_snapshot(s, (int)i - 1, frames, n, now);
            for (size_t j = 0; j < n && j < MAX_FRAMES; j++) zmq_msg_close(&msgs[j]);
        }
    }
    tick(s, now);
}

/* The next message for the user (books follow it), or NULL; a publisher's gap received only for
 * the books (subscribe_gaps) is applied to them and not handed out. */
static ff_msg *take(ff_subscriber *s) {
    ff_msg *m;
    while ((m = q_pop(&s->out))) {
        if (s->books) {
            on_delivered(s, m);
            if (!m->local && !strcmp(m->kind->kind, "gap") && !wanted(s, m->topic)) {
                ff_msg_free(m);
                continue;
            }
        }
        s->counters[FFC_DELIVERED]++;
        return m;
    }
    return NULL;
}

ff_msg *ff_subscriber_recv(ff_subscriber *s, int timeout_ms) {
    double deadline = timeout_ms >= 0 ? monotonic() + timeout_ms / 1000.0 : 0;
    zmq_pollitem_t *items = s->items;
    ff_msg *m = NULL;
    for (;;) {
        if ((m = take(s))) break;
        double now = monotonic();
        int has;
        double t = next_deadline(s, &has);
        if (timeout_ms >= 0 && (!has || deadline < t)) { t = deadline; has = 1; }
        long wait = has ? (long)((t - now) * 1000) + 1 : -1;
        if (wait < -1) wait = 0;
        if (zmq_poll(items, (int)s->ndealers + 1, wait) < 0 && zmq_errno() == EINTR) break; /* a signal: let the caller look */
        pump(s, items);
        if ((m = take(s))) break;
        if (timeout_ms >= 0 && monotonic() >= deadline) break;
    }
    return m;
}

static void kept_free(kept_book *k) {
    ff_book_clear(&k->book);
    free(k->topic);
    free(k->gateway);
    free(k);
}

static void book_topic(char *buf, size_t cap, const char *exchange, const char *symbol) {
    snprintf(buf, cap, "book.");
    topic_append(buf, cap, exchange);
    if (symbol) topic_append(buf, cap, symbol);
}

static void on_delivered(ff_subscriber *s, const ff_msg *m) {
    const char *kind = m->kind->kind, *gw = m->header.gateway;
    if (!strcmp(kind, "book_delta") || !strcmp(kind, "book_snapshot")) {
        kept_book *k = s->kept;
        while (k && (strcmp(k->topic, m->topic) || strcmp(k->gateway, gw))) k = k->next;
        if (!k) {
            if (!strcmp(kind, "book_delta")) return;
            k = calloc(1, sizeof *k);
            if (!k) abort();
            k->topic = xstrdup(m->topic);
            k->gateway = xstrdup(gw);
            ff_book_init(&k->book);
            k->next = s->kept;
            s->kept = k;
        }
        ff_book_apply(&k->book, m);
    } else if (!strcmp(kind, "gap")) {
        char scope[2 * FF_MAX_TOPIC + 16];   /* this client keeps L2 books only */
        if (!gap_scope(m, scope, sizeof scope) || strncmp(scope, "book.", 5)) return;
        size_t n = strlen(scope);
        for (kept_book **pp = &s->kept; *pp;) {
            kept_book *k = *pp;
            if (!strcmp(k->gateway, gw) && !strncmp(k->topic, scope, n)) {
                *pp = k->next;
                kept_free(k);
            } else {
                pp = &k->next;
            }
        }
    }
}

const ff_book *ff_subscriber_book(const ff_subscriber *s, const char *exchange, const char *symbol) {
    char topic[2 * FF_MAX_TOPIC + 16];
    book_topic(topic, sizeof topic, exchange, symbol);
    const kept_book *best = NULL;
    for (const kept_book *k = s->kept; k; k = k->next)
        if (!strcmp(k->topic, topic) && (!best || strcmp(k->gateway, best->gateway) < 0)) best = k;
    return best ? &best->book : NULL;
}

const uint64_t *ff_subscriber_counters(const ff_subscriber *s) { return s->counters; }

static int kept_cmp(const void *a, const void *b) {
    const kept_book *x = *(const kept_book *const *)a, *y = *(const kept_book *const *)b;
    int c = strcmp(x->topic, y->topic);
    return c ? c : strcmp(x->gateway, y->gateway);
}

void ff_subscriber_print_books(const ff_subscriber *s, FILE *f) {
    size_t n = 0;
    for (const kept_book *k = s->kept; k; k = k->next) n++;
    const kept_book **v = calloc(n + 1, sizeof *v);
    if (!v) abort();
    n = 0;
    for (const kept_book *k = s->kept; k; k = k->next) v[n++] = k;
    qsort(v, n, sizeof *v, kept_cmp);
    for (size_t i = 0; i < n; i++) ff_book_print_json(v[i]->gateway, v[i]->topic, &v[i]->book, f);
    free(v);
}

void ff_subscriber_close(ff_subscriber *s) {
    if (!s) return;
    for (gw_st *g = s->gateways; g;) {
        gw_st *gn = g->next;
        for (topic_st *t = g->first; t;) {
            topic_st *tn = t->onext;
            q_free(&t->buffer);
            free(t->topic); free(t->channel); free(t->exchange); free(t->symbol);
            free(t);
            t = tn;
        }
        free(g->name);
        free(g);
        g = gn;
    }
    for (request *r = s->requests; r;) {
        request *rn = r->next;
        request_free(r);
        r = rn;
    }
    q_free(&s->out);
    while (s->kept) {
        kept_book *k = s->kept;
        s->kept = k->next;
        kept_free(k);
    }
    if (s->sub) zmq_close(s->sub);
    for (size_t i = 0; i < s->ndealers; i++) zmq_close(s->dealers[i]);
    if (s->ctx) zmq_ctx_term(s->ctx);
    for (size_t i = 0; i < s->nprefixes; i++) free(s->prefixes[i]);
    free(s->prefixes);
    free(s->dealers);
    free(s->items);
    free(s);
}
