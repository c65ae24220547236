/* Wire v1 decoding, decimals, books and canonical JSON (docs/wire.md, docs/clients.md). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "ff.h"
#include "kinds.h"

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---- decimals -------------------------------------------------------------------- */

int ff_dec_valid(const char *s, size_t n) {
    size_t i = 0, start;
    if (i < n && s[i] == '-') i++;
    start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == start) return 0;
    if (i == n) return 1;
    if (s[i] != '.') return 0;
    start = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    return i == n && i > start;
}

/* Split a plain decimal into sign, significant integer digits and significant fraction. */
static void dec_parts(const char *s, size_t n, int *neg, const char **ip, size_t *il, const char **fp, size_t *fl) {
    size_t i = 0;
    *neg = n > 0 && s[0] == '-';
    if (*neg) i = 1;
    while (i < n && s[i] == '0') i++;
    *ip = s + i;
    size_t j = i;
    while (j < n && s[j] != '.') j++;
    *il = j - i;
    if (j < n) {
        *fp = s + j + 1;
        *fl = n - j - 1;
        while (*fl > 0 && (*fp)[*fl - 1] == '0') (*fl)--;
    } else {
        *fp = s + n;
        *fl = 0;
    }
    if (*il == 0 && *fl == 0) *neg = 0; /* -0 == 0 */
}

int ff_dec_cmp(const char *a, size_t an, const char *b, size_t bn) {
    int na, nb;
    const char *ai, *af, *bi, *bf;
    size_t ail, afl, bil, bfl;
    dec_parts(a, an, &na, &ai, &ail, &af, &afl);
    dec_parts(b, bn, &nb, &bi, &bil, &bf, &bfl);
    if (na != nb) return na ? -1 : 1;
    int c = 0;
    if (ail != bil) c = ail < bil ? -1 : 1;
    else {
        int m = memcmp(ai, bi, ail);
        if (m) c = m < 0 ? -1 : 1;
        else {
            size_t k = afl > bfl ? afl : bfl;
            for (size_t i = 0; i < k && !c; i++) {
                char x = i < afl ? af[i] : '0', y = i < bfl ? bf[i] : '0';
                if (x != y) c = x < y ? -1 : 1;
            }
        }
    }
    return na ? -c : c;
}

int ff_dec_is_zero(const char *s, size_t n) {
    int neg;
    const char *ip, *fp;
    size_t il, fl;
    dec_parts(s, n, &neg, &ip, &il, &fp, &fl);
    return il == 0 && fl == 0;
}

/* ---- msgpack helpers ------------------------------------------------------------- */

static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; }
        else return 0;
        if (i + k >= n) return 0;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* What Python's msgpack.unpackb(raw=False, strict_map_key=True) accepts: UTF-8 strs,
 * map keys str (bin keys, which it would take, never occur), no ext types. */
static int obj_acceptable(const msgpack_object *o, int depth) {
    if (depth > 64) return 0;
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        return utf8_valid((const unsigned char *)o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_EXT:
        return 0;
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!obj_acceptable(&o->via.array.ptr[i], depth + 1)) return 0;
        return 1;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type != MSGPACK_OBJECT_STR) return 0;
            if (!obj_acceptable(k, depth + 1) || !obj_acceptable(&o->via.map.ptr[i].val, depth + 1)) return 0;
        }
        return 1;
    default:
        return 1;
    }
}

static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* msgpack-c allocates a container's elements from its declared count before reading them:
 * a 5-byte "array of 2^32 items" would ask for ~100 GB. Walk the encoding first and refuse
 * any count that the remaining bytes cannot hold (every item takes at least one byte), so
 * memory stays proportional to the frame size. */
static int mp_plausible(const unsigned char *p, size_t n) {
    size_t i = 0;
    uint64_t pending = 1;
    while (pending) {
        if (i >= n) return 0;
        pending--;
        unsigned c = p[i++];
        uint64_t len = 0, items = 0;
        int hdr = 0;
        if (c <= 0x7f || c >= 0xe0) {
        } else if (c <= 0x8f) {
            items = 2 * (uint64_t)(c & 0x0f);
        } else if (c <= 0x9f) {
            items = c & 0x0f;
        } else if (c <= 0xbf) {
            len = c & 0x1f;
        } else {
            switch (c) {
            case 0xc0: case 0xc2: case 0xc3: break;
            case 0xc4: case 0xd9: hdr = 1; break;
            case 0xc5: case 0xda: hdr = 2; break;
            case 0xc6: case 0xdb: hdr = 4; break;
            case 0xc7: hdr = 1; len = 1; break;
            case 0xc8: hdr = 2; len = 1; break;
            case 0xc9: hdr = 4; len = 1; break;
            case 0xca: len = 4; break;
            case 0xcb: len = 8; break;
            case 0xcc: case 0xd0: len = 1; break;
            case 0xcd: case 0xd1: len = 2; break;
            case 0xce: case 0xd2: len = 4; break;
            case 0xcf: case 0xd3: len = 8; break;
            case 0xd4: len = 2; break;
            case 0xd5: len = 3; break;
            case 0xd6: len = 5; break;
            case 0xd7: len = 9; break;
            case 0xd8: len = 17; break;
            case 0xdc: case 0xdd: case 0xde: case 0xdf: {
                int w = (c == 0xdc || c == 0xde) ? 2 : 4;
                if ((size_t)w > n - i) return 0;
                items = be(p + i, w) * ((c >= 0xde) ? 2 : 1);
                i += (size_t)w;
                break;
            }
            default: return 0; /* 0xc1: never used */
            }
        }
        if (hdr) {
            if ((size_t)hdr > n - i) return 0;
            len += be(p + i, hdr);
            i += (size_t)hdr;
        }
        if (len > n - i) return 0;
        i += (size_t)len;
        pending += items;
        if (pending > n - i) return 0;
    }
    return 1;
}

static int unpack_all(msgpack_unpacked *u, const char *data, size_t len) {
    size_t off = 0;
    if (!mp_plausible((const unsigned char *)data, len)) return 0;
    if (msgpack_unpack_next(u, data, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) return 0;
    return obj_acceptable(&u->data, 0);
}

static int is_int(const msgpack_object *o) {
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}

static int as_i64(const msgpack_object *o, int64_t *v) {
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) { *v = o->via.i64; return 1; }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX) { *v = (int64_t)o->via.u64; return 1; }
    return 0;
}

static int str_eq(const msgpack_object *o, const char *s) {
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *name) {
    size_t n = strlen(name);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, name, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

const msgpack_object *ff_get(const ff_msg *m, const char *name) { return map_get(&m->body, name); }

const ff_kind *ff_kind_by_name(const char *kind, size_t len) {
    for (size_t i = 0; i < FF_NKINDS; i++)
        if (strlen(ff_kinds[i].kind) == len && memcmp(ff_kinds[i].kind, kind, len) == 0) return &ff_kinds[i];
    return NULL;
}

static int is_dec(const msgpack_object *o) {
    return o->type == MSGPACK_OBJECT_STR && ff_dec_valid(o->via.str.ptr, o->via.str.size);
}

/* Check one field against its type; returns NULL when fine, else a reason. */
static const char *check_field(const msgpack_object *v, ff_field_type t) {
    int nil = v == NULL || v->type == MSGPACK_OBJECT_NIL;
    switch (t) {
    case FT_DEC_OPT: if (nil) return NULL; /* fall through */
    case FT_DEC: if (v == NULL) return "required key missing";
        return is_dec(v) ? NULL : "expected a plain decimal string";
    case FT_STR_OPT: if (nil) return NULL; /* fall through */
    case FT_STR: if (v == NULL) return "required key missing";
        return v->type == MSGPACK_OBJECT_STR ? NULL : "expected str";
    case FT_INT_OPT: if (nil) return NULL; /* fall through */
    case FT_INT: if (v == NULL) return "required key missing";
        return is_int(v) ? NULL : "expected int";
    case FT_BOOL_OPT: return nil || v->type == MSGPACK_OBJECT_BOOLEAN ? NULL : "expected bool or nil";
    case FT_MAP: if (v == NULL) return "required key missing";
        return v->type == MSGPACK_OBJECT_MAP ? NULL : "expected a map";
    case FT_LEVELS:
        if (v == NULL) return "required key missing";
        if (v->type != MSGPACK_OBJECT_ARRAY) return "expected an array of [price, size]";
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            const msgpack_object *l = &v->via.array.ptr[i];
            if (l->type != MSGPACK_OBJECT_ARRAY || l->via.array.size != 2) return "a level is [price, size]";
            if (!is_dec(&l->via.array.ptr[0]) || !is_dec(&l->via.array.ptr[1])) return "level values must be plain decimal strings";
        }
        return NULL;
    case FT_ORDERS:
        if (v == NULL) return "required key missing";
        if (v->type != MSGPACK_OBJECT_ARRAY) return "expected an array of [id, side, price, size]";
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            const msgpack_object *r = &v->via.array.ptr[i];
            if (r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size != 4) return "an order is [id, side, price, size]";
            if (r->via.array.ptr[0].type != MSGPACK_OBJECT_STR) return "order id must be str";
            if (!str_eq(&r->via.array.ptr[1], "bid") && !str_eq(&r->via.array.ptr[1], "ask")) return "order side must be 'bid' or 'ask'";
            if (!is_dec(&r->via.array.ptr[2]) || !is_dec(&r->via.array.ptr[3])) return "order price/size must be plain decimal strings";
        }
        return NULL;
    }
    return "unknown field type";
}

/* Append a topic component ('.' and ' ' -> '_', nil -> '_'); returns the new length or -1. */
static long topic_part(char *buf, size_t cap, size_t len, const msgpack_object *v) {
    if (v == NULL || v->type != MSGPACK_OBJECT_STR) {
        if (len + 2 > cap) return -1;
        buf[len++] = '_';
    } else {
        if (len + v->via.str.size + 1 > cap) return -1;
        for (uint32_t i = 0; i < v->via.str.size; i++) {
            char c = v->via.str.ptr[i];
            buf[len++] = (c == '.' || c == ' ') ? '_' : c;
        }
    }
    buf[len++] = '.';
    return (long)len;
}

void ff_msg_free(ff_msg *m) {
    if (!m) return;
    free(m->topic);
    free(m->header.gateway);
    msgpack_unpacked_destroy(&m->body_unpacked);
    free(m->body_raw);
    free(m);
}

static int decode_header(const ff_frame *f, ff_header *h, char *err, size_t errlen) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = FF_INVALID;
    if (f->size > FF_MAX_FRAME) { seterr(err, errlen, "header: %zu bytes exceeds the %u byte limit", f->size, FF_MAX_FRAME); goto out; }
    if (!unpack_all(&u, f->data, f->size)) { seterr(err, errlen, "header: not valid msgpack"); goto out; }
    const msgpack_object *o = &u.data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 7) { seterr(err, errlen, "header: expected a msgpack array of 7 items"); goto out; }
    const msgpack_object *a = o->via.array.ptr;
    if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 != FF_WIRE_VERSION) {
        seterr(err, errlen, "header: unsupported wire version");
        rc = is_int(&a[0]) ? FF_BAD_VERSION : FF_INVALID;
        goto out;
    }
    if (a[1].type != MSGPACK_OBJECT_STR || !is_int(&a[2]) || !is_int(&a[3])) { seterr(err, errlen, "header: gateway must be str, epoch and seq int"); goto out; }
    if (a[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[3].type != MSGPACK_OBJECT_POSITIVE_INTEGER) { seterr(err, errlen, "header: epoch and seq must be unsigned (uint64)"); goto out; }
    if ((a[4].type != MSGPACK_OBJECT_NIL && !is_int(&a[4])) || !is_int(&a[5]) || !is_int(&a[6])) { seterr(err, errlen, "header: timestamps must be integer nanoseconds"); goto out; }
    h->has_timestamp = a[4].type != MSGPACK_OBJECT_NIL;
    h->timestamp = 0;
    if ((h->has_timestamp && !as_i64(&a[4], &h->timestamp)) || !as_i64(&a[5], &h->receipt_timestamp) || !as_i64(&a[6], &h->publish_timestamp)) {
        seterr(err, errlen, "header: timestamps must be within int64");
        goto out;
    }
    h->version = 1;
    h->epoch = a[2].via.u64;
    h->seq = a[3].via.u64;
    h->gateway = dupn(a[1].via.str.ptr, a[1].via.str.size);
    rc = h->gateway ? FF_OK : FF_INVALID;
out:
    msgpack_unpacked_destroy(&u);
    return rc;
}

int ff_decode(const ff_frame *frames, size_t nframes, ff_msg **out, char *err, size_t errlen) {
    *out = NULL;
    if (nframes != 3) { seterr(err, errlen, "expected 3 frames, got %zu", nframes); return FF_INVALID; }
    const ff_frame *t = &frames[0];
    if (t->size > FF_MAX_TOPIC) { seterr(err, errlen, "topic: longer than %d bytes", FF_MAX_TOPIC); return FF_INVALID; }
    const unsigned char *tp = t->data;
    size_t dots = 0;
    for (size_t i = 0; i < t->size; i++) {
        if (tp[i] > 0x7f) { seterr(err, errlen, "topic: not ASCII"); return FF_INVALID; }
        if (tp[i] == '.') dots++;
    }
    if (t->size == 0 || tp[t->size - 1] != '.' || dots < 2) { seterr(err, errlen, "topic: does not end with the '.' terminator"); return FF_INVALID; }
    ff_msg *m = calloc(1, sizeof *m);
    if (!m) { seterr(err, errlen, "out of memory"); return FF_INVALID; }
    msgpack_unpacked_init(&m->body_unpacked);
    int rc = decode_header(&frames[1], &m->header, err, errlen);
    if (rc != FF_OK) goto fail;
    rc = FF_INVALID;
    const ff_frame *b = &frames[2];
    if (b->size > FF_MAX_FRAME) { seterr(err, errlen, "body: %zu bytes exceeds the %u byte limit", b->size, FF_MAX_FRAME); goto fail; }
    /* msgpack-c points strings into the input: the message keeps its own copy. */
    m->body_raw = malloc(b->size ? b->size : 1);
    if (!m->body_raw) goto fail;
    memcpy(m->body_raw, b->data, b->size);
    m->body_len = b->size;
    if (!unpack_all(&m->body_unpacked, m->body_raw, m->body_len)) { seterr(err, errlen, "body: not valid msgpack"); goto fail; }
    m->body = m->body_unpacked.data;
    if (m->body.type != MSGPACK_OBJECT_MAP) { seterr(err, errlen, "body: expected a msgpack map"); goto fail; }
    const msgpack_object *k = map_get(&m->body, "kind");
    if (k == NULL || k->type != MSGPACK_OBJECT_STR) { seterr(err, errlen, "body: unknown event kind None"); goto fail; }
    m->kind = ff_kind_by_name(k->via.str.ptr, k->via.str.size);
    if (m->kind == NULL) {
        seterr(err, errlen, "body: unknown event kind '%.*s'", (int)(k->via.str.size > 80 ? 80 : k->via.str.size), k->via.str.ptr);
        rc = FF_UNKNOWN_KIND;
        goto fail;
    }
    for (size_t i = 0; i < m->kind->nfields; i++) {
        const char *why = check_field(map_get(&m->body, m->kind->fields[i].name), m->kind->fields[i].type);
        if (why) { seterr(err, errlen, "body: invalid %s: %s: %s", m->kind->kind, m->kind->fields[i].name, why); goto fail; }
    }
    /* The topic must be the one computed from the body. */
    char want[FF_MAX_TOPIC + 2];
    size_t cl = strlen(m->kind->channel);
    memcpy(want, m->kind->channel, cl);
    want[cl] = '.';
    long len = (long)cl + 1;
    for (size_t i = 0; i < m->kind->ntopic_keys && len >= 0; i++)
        len = topic_part(want, sizeof want, (size_t)len, map_get(&m->body, m->kind->topic_keys[i]));
    if (len < 0 || (size_t)len != t->size || memcmp(want, t->data, t->size) != 0) {
        seterr(err, errlen, "topic '%.*s' does not match the body", (int)(t->size > 80 ? 80 : t->size), (const char *)t->data);
        goto fail;
    }
    m->topic = dupn(t->data, t->size);
    if (!m->topic) goto fail;
    *out = m;
    return FF_OK;
fail:
    ff_msg_free(m);
    return rc == FF_OK ? FF_INVALID : rc;
}

/* ---- books ----------------------------------------------------------------------- */

void ff_book_init(ff_book *b) {
    memset(b, 0, sizeof *b);
    b->bids.descending = 1;
}

static void side_clear(ff_side *s) {
    for (size_t i = 0; i < s->n; i++) { free(s->v[i].price); free(s->v[i].size); }
    s->n = 0;
}

void ff_book_clear(ff_book *b) {
    side_clear(&b->bids);
    side_clear(&b->asks);
    free(b->bids.v);
    free(b->asks.v);
    ff_book_init(b);
}

/* First index whose price is >= p. */
static size_t side_index(const ff_side *s, const char *p, size_t pn, int *found) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ff_dec_cmp(s->v[mid].price, strlen(s->v[mid].price), p, pn) < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = lo < s->n && ff_dec_cmp(s->v[lo].price, strlen(s->v[lo].price), p, pn) == 0;
    return lo;
}

static void side_set(ff_side *s, const msgpack_object *lvl) {
    const msgpack_object *p = &lvl->via.array.ptr[0], *z = &lvl->via.array.ptr[1];
    int found;
    size_t i = side_index(s, p->via.str.ptr, p->via.str.size, &found);
    if (ff_dec_is_zero(z->via.str.ptr, z->via.str.size)) {
        if (found) {
            free(s->v[i].price);
            free(s->v[i].size);
            memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
            s->n--;
        }
        return;
    }
    char *price = dupn(p->via.str.ptr, p->via.str.size), *size = dupn(z->via.str.ptr, z->via.str.size);
    if (!price || !size) { free(price); free(size); return; }
    if (found) {
        /* The level keeps the publisher's strings of its latest update. */
        free(s->v[i].price);
        free(s->v[i].size);
    } else {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            ff_level *v = realloc(s->v, cap * sizeof *v);
            if (!v) { free(price); free(size); return; }
            s->v = v;
            s->cap = cap;
        }
        memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof *s->v);
        s->n++;
    }
    s->v[i].price = price;
    s->v[i].size = size;
}

void ff_book_apply(ff_book *b, const ff_msg *m) {
    int snap = strcmp(m->kind->kind, "book_snapshot") == 0;
    if (!snap && strcmp(m->kind->kind, "book_delta") != 0) return;
    if (snap) { side_clear(&b->bids); side_clear(&b->asks); }
    const msgpack_object *bids = ff_get(m, "bids"), *asks = ff_get(m, "asks"), *seq = ff_get(m, "sequence");
    for (uint32_t i = 0; i < bids->via.array.size; i++) side_set(&b->bids, &bids->via.array.ptr[i]);
    for (uint32_t i = 0; i < asks->via.array.size; i++) side_set(&b->asks, &asks->via.array.ptr[i]);
    if (seq && is_int(seq)) {
        b->has_sequence = as_i64(seq, &b->sequence);
    }
}

const ff_level *ff_side_at(const ff_side *s, size_t i) {
    if (i >= s->n) return NULL;
    return s->descending ? &s->v[s->n - 1 - i] : &s->v[i];
}

/* ---- canonical JSON -------------------------------------------------------------- */

void ff_json_str(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

static void json_double(FILE *f, double d) {
    char buf[40];
    if (d != d || d - d != 0) { fputs("null", f); return; }
    for (int prec = 1; prec <= 17; prec++) { /* shortest text that reads back exactly */
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    fputs(buf, f);
    if (!strpbrk(buf, ".eEn")) fputs(".0", f);
}

static void json_obj(FILE *f, const msgpack_object *o) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: fputs("null", f); break;
    case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", f); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(f, "%llu", (unsigned long long)o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(f, "%lld", (long long)o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: json_double(f, o->via.f64); break;
    case MSGPACK_OBJECT_STR: ff_json_str(f, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: ff_json_str(f, o->via.bin.ptr, o->via.bin.size); break;
    case MSGPACK_OBJECT_ARRAY:
        fputc('[', f);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) fputc(',', f);
            json_obj(f, &o->via.array.ptr[i]);
        }
        fputc(']', f);
        break;
    case MSGPACK_OBJECT_MAP:
        fputc('{', f);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i) fputc(',', f);
            json_obj(f, &o->via.map.ptr[i].key);
            fputc(':', f);
            json_obj(f, &o->via.map.ptr[i].val);
        }
        fputc('}', f);
        break;
    default: fputs("null", f);
    }
}

void ff_event_print_json(const ff_msg *m, FILE *f) {
    fputs("{\"kind\":", f);
    ff_json_str(f, m->kind->kind, strlen(m->kind->kind));
    for (size_t i = 0; i < m->kind->nfields; i++) {
        fputc(',', f);
        ff_json_str(f, m->kind->fields[i].name, strlen(m->kind->fields[i].name));
        fputc(':', f);
        const msgpack_object *v = ff_get(m, m->kind->fields[i].name);
        if (v) json_obj(f, v);
        else fputs("null", f);
    }
    fputc('}', f);
}

void ff_msg_print_json(const ff_msg *m, FILE *f) {
    const ff_header *h = &m->header;
    fputs("{\"type\":\"msg\",\"topic\":", f);
    ff_json_str(f, m->topic, strlen(m->topic));
    fputs(",\"gateway\":", f);
    ff_json_str(f, h->gateway, strlen(h->gateway));
    fprintf(f, ",\"epoch\":%llu,\"seq\":%llu,\"timestamp\":", (unsigned long long)h->epoch, (unsigned long long)h->seq);
    if (h->has_timestamp) fprintf(f, "%lld", (long long)h->timestamp);
    else fputs("null", f);
    fprintf(f, ",\"receipt_timestamp\":%lld,\"event\":", (long long)h->receipt_timestamp);
    ff_event_print_json(m, f);
    fputs("}\n", f);
}

static void json_side(FILE *f, const ff_side *s) {
    fputc('[', f);
    for (size_t i = 0; i < s->n; i++) {
        const ff_level *l = ff_side_at(s, i);
        if (i) fputc(',', f);
        fputc('[', f);
        ff_json_str(f, l->price, strlen(l->price));
        fputc(',', f);
        ff_json_str(f, l->size, strlen(l->size));
        fputc(']', f);
    }
    fputc(']', f);
}

void ff_book_print_json(const char *gateway, const char *topic, const ff_book *b, FILE *f) {
    fputs("{\"type\":\"book\",\"gateway\":", f);
    ff_json_str(f, gateway, strlen(gateway));
    fputs(",\"topic\":", f);
    ff_json_str(f, topic, strlen(topic));
    fputs(",\"bids\":", f);
    json_side(f, &b->bids);
    fputs(",\"asks\":", f);
    json_side(f, &b->asks);
    fputs("}\n", f);
}
