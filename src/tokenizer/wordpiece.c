/*
 * wordpiece.c - token table and WordPiece, equal to HF `tokenizers`
 * models/wordpiece/mod.rs WordPiece::tokenize:
 *
 *   start = 0
 *   while start < len(word):
 *       end = len(word)
 *       while start < end:  try word[start:end] ("##" + it when start > 0);
 *                           on a hit emit it, else end -= 1 char
 *       no hit at all: the whole word is [UNK]
 *
 * Two shortcuts keep it exact and fast: `end` starts at the longest key in
 * the table (nothing longer can hit), and the FNV-1a hash of every
 * candidate word[start:end] comes from one forward pass, so each probe
 * costs one table lookup.
 */
#include "tokenizer/wordpiece.h"

#include <stdlib.h>
#include <string.h>

#define FNV_INIT 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

static inline uint64_t fnv_step(uint64_t h, uint8_t b)
{
    return (h ^ b) * FNV_PRIME;
}

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = FNV_INIT;
    for (size_t i = 0; i < n; i++)
        h = fnv_step(h, (uint8_t)s[i]);
    return h;
}

/* FNV's low bits are weak; fold the high half in before masking. */
static inline size_t slot_of(uint64_t h, size_t mask)
{
    return (size_t)(h ^ (h >> 29) ^ (h >> 47)) & mask;
}

static inline uint32_t tag_of(uint64_t h)
{
    return (uint32_t)(h >> 32);
}

void me_ids_free(me_ids *v)
{
    if (!v)
        return;
    free(v->ids);
    v->ids = NULL;
    v->n = 0;
    v->cap = 0;
}

int me_ids_push(me_ids *out, int32_t id, me_err *e)
{
    if (out->n >= out->cap) {
        RETURN_ERROR_IF(out->cap >= INT32_MAX / 2, e, MEDEMBED_ERR_TOO_LONG,
                        "token list would exceed %d ids", INT32_MAX / 2);
        int32_t cap = out->cap ? out->cap * 2 : 64;
        int32_t *p = realloc(out->ids, (size_t)cap * sizeof *p);
        RETURN_ERROR_IF(!p, e, MEDEMBED_ERR_NOMEM, "out of memory growing ids to %d", cap);
        out->ids = p;
        out->cap = cap;
    }
    out->ids[out->n++] = id;
    return MEDEMBED_OK;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

static me_vslot *table_new(size_t cap)
{
    me_vslot *t = malloc(cap * sizeof *t);
    if (!t)
        return NULL;
    for (size_t i = 0; i < cap; i++) {
        t[i].tag = 0;
        t[i].id = -1;
    }
    return t;
}

int me_vocab_init(me_vocab *v, size_t n_hint, const char *prefix, size_t prefix_len, me_err *e)
{
    memset(v, 0, sizeof *v);
    RETURN_ERROR_IF(prefix_len >= sizeof v->prefix, e, MEDEMBED_ERR_FORMAT,
                    "continuing_subword_prefix is %zu bytes, more than %zu", prefix_len,
                    sizeof v->prefix - 1);
    memcpy(v->prefix, prefix, prefix_len);
    v->prefix[prefix_len] = 0;
    v->prefix_len = prefix_len;
    size_t cap = pow2_at_least(n_hint * 4 + 4);
    v->full = table_new(cap);
    RETURN_ERROR_IF(!v->full, e, MEDEMBED_ERR_NOMEM, "out of memory for a %zu-slot vocab", cap);
    v->full_mask = cap - 1;
    return MEDEMBED_OK;
}

void me_vocab_free(me_vocab *v)
{
    if (!v)
        return;
    free(v->pool);
    free(v->off);
    free(v->len);
    free(v->model);
    free(v->full);
    free(v->cont);
    memset(v, 0, sizeof *v);
}

static int ensure_ids(me_vocab *v, int32_t id, me_err *e)
{
    if (id < v->cap_ids)
        return MEDEMBED_OK;
    int32_t cap = v->cap_ids ? v->cap_ids : 1024;
    while (cap <= id)
        cap = cap > INT32_MAX / 2 ? INT32_MAX : cap * 2;
    uint32_t *off = realloc(v->off, (size_t)cap * sizeof *off);
    if (off)
        v->off = off;
    uint32_t *len = realloc(v->len, (size_t)cap * sizeof *len);
    if (len)
        v->len = len;
    uint8_t *model = realloc(v->model, (size_t)cap);
    if (model)
        v->model = model;
    RETURN_ERROR_IF(!off || !len || !model, e, MEDEMBED_ERR_NOMEM,
                    "out of memory for %d vocab ids", cap);
    for (int32_t i = v->cap_ids; i < cap; i++) {
        v->len[i] = ME_VOCAB_HOLE;
        v->off[i] = 0;
        v->model[i] = 0;
    }
    v->cap_ids = cap;
    return MEDEMBED_OK;
}

static int pool_add(me_vocab *v, const char *s, size_t len, uint32_t *off, me_err *e)
{
    RETURN_ERROR_IF(len >= UINT32_MAX / 2 || v->pool_len > UINT32_MAX / 2 - len - 1, e,
                    MEDEMBED_ERR_FORMAT, "vocab strings exceed %u bytes", UINT32_MAX / 2);
    if (v->pool_len + len + 1 > v->pool_cap) {
        size_t cap = v->pool_cap ? v->pool_cap : 1 << 16;
        while (cap < v->pool_len + len + 1)
            cap *= 2;
        char *p = realloc(v->pool, cap);
        RETURN_ERROR_IF(!p, e, MEDEMBED_ERR_NOMEM, "out of memory for %zu bytes of vocab", cap);
        v->pool = p;
        v->pool_cap = cap;
    }
    memcpy(v->pool + v->pool_len, s, len);
    v->pool[v->pool_len + len] = 0;
    *off = (uint32_t)v->pool_len;
    v->pool_len += len + 1;
    return MEDEMBED_OK;
}

/* Finds key in a table whose keys are the pool strings of their ids with
 * `skip` leading bytes dropped. Returns the slot index (empty or match). */
static size_t table_probe(const me_vocab *v, const me_vslot *t, size_t mask, size_t skip,
                          const char *s, size_t len, uint64_t h)
{
    size_t i = slot_of(h, mask);
    uint32_t tag = tag_of(h);
    for (;;) {
        const me_vslot *sl = &t[i];
        if (sl->id < 0)
            return i;
        if (sl->tag == tag) {
            int32_t id = sl->id;
            if (v->len[id] - skip == len && memcmp(v->pool + v->off[id] + skip, s, len) == 0)
                return i;
        }
        i = (i + 1) & mask;
    }
}

static int grow_full(me_vocab *v, me_err *e)
{
    size_t cap = (v->full_mask + 1) * 2;
    me_vslot *t = table_new(cap);
    RETURN_ERROR_IF(!t, e, MEDEMBED_ERR_NOMEM, "out of memory for a %zu-slot vocab", cap);
    for (size_t i = 0; i <= v->full_mask; i++) {
        int32_t id = v->full[i].id;
        if (id < 0)
            continue;
        uint64_t h = fnv(v->pool + v->off[id], v->len[id]);
        size_t j = slot_of(h, cap - 1);
        while (t[j].id >= 0)
            j = (j + 1) & (cap - 1);
        t[j].id = id;
        t[j].tag = tag_of(h);
    }
    free(v->full);
    v->full = t;
    v->full_mask = cap - 1;
    return MEDEMBED_OK;
}

int me_vocab_add_model(me_vocab *v, const char *s, size_t len, int32_t id, int32_t *other_id,
                       me_err *e)
{
    RETURN_ERROR_IF(id < 0, e, MEDEMBED_ERR_FORMAT, "negative id %d", id);
    FORWARD_IF_ERROR(ensure_ids(v, id, e));
    if (v->len[id] != ME_VOCAB_HOLE) {
        if (other_id)
            *other_id = id;
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "id %d is given to two tokens", id);
    }
    if ((size_t)(v->n_model + 1) * 4 > v->full_mask + 1)
        FORWARD_IF_ERROR(grow_full(v, e));
    uint64_t h = fnv(s, len);
    size_t i = table_probe(v, v->full, v->full_mask, 0, s, len, h);
    uint32_t off;
    FORWARD_IF_ERROR(pool_add(v, s, len, &off, e));
    if (v->full[i].id >= 0) {
        /* Same string again: the later id wins, the earlier becomes a hole. */
        int32_t old = v->full[i].id;
        v->len[old] = ME_VOCAB_HOLE;
        v->model[old] = 0;
        v->n_model--;
    }
    v->full[i].id = id;
    v->full[i].tag = tag_of(h);
    v->off[id] = off;
    v->len[id] = (uint32_t)len;
    v->model[id] = 1;
    v->n_model++;
    if (id + 1 > v->n_ids)
        v->n_ids = id + 1;
    if (len > v->max_full)
        v->max_full = len;
    return MEDEMBED_OK;
}

int me_vocab_set_added(me_vocab *v, const char *s, size_t len, int32_t id, me_err *e)
{
    RETURN_ERROR_IF(id < 0, e, MEDEMBED_ERR_FORMAT, "negative id %d", id);
    FORWARD_IF_ERROR(ensure_ids(v, id, e));
    if (v->model[id])
        return MEDEMBED_OK; /* the model's string stays (HF: same content) */
    uint32_t off;
    FORWARD_IF_ERROR(pool_add(v, s, len, &off, e));
    v->off[id] = off;
    v->len[id] = (uint32_t)len;
    if (id + 1 > v->n_ids)
        v->n_ids = id + 1;
    return MEDEMBED_OK;
}

int me_vocab_finish(me_vocab *v, me_err *e)
{
    size_t n_cont = 0;
    size_t pl = v->prefix_len;
    for (int32_t id = 0; id < v->n_ids; id++)
        if (v->model[id] && v->len[id] >= pl && memcmp(v->pool + v->off[id], v->prefix, pl) == 0)
            n_cont++;
    size_t cap = pow2_at_least(n_cont * 4 + 4);
    free(v->cont);
    v->cont = table_new(cap);
    RETURN_ERROR_IF(!v->cont, e, MEDEMBED_ERR_NOMEM, "out of memory for a %zu-slot table", cap);
    v->cont_mask = cap - 1;
    v->max_cont = 0;
    for (int32_t id = 0; id < v->n_ids; id++) {
        if (!v->model[id] || v->len[id] < pl || memcmp(v->pool + v->off[id], v->prefix, pl) != 0)
            continue;
        const char *k = v->pool + v->off[id] + pl;
        size_t kl = v->len[id] - pl;
        uint64_t h = fnv(k, kl);
        size_t i = table_probe(v, v->cont, v->cont_mask, pl, k, kl, h);
        v->cont[i].id = id; /* strings are unique, so the slot was empty */
        v->cont[i].tag = tag_of(h);
        if (kl > v->max_cont)
            v->max_cont = kl;
    }
    return MEDEMBED_OK;
}

int32_t me_vocab_find(const me_vocab *v, const char *s, size_t len)
{
    if (!v->full)
        return -1;
    size_t i = table_probe(v, v->full, v->full_mask, 0, s, len, fnv(s, len));
    return v->full[i].id;
}

const char *me_vocab_str(const me_vocab *v, int32_t id)
{
    if (id < 0 || id >= v->n_ids || v->len[id] == ME_VOCAB_HOLE)
        return NULL;
    return v->pool + v->off[id];
}

int me_wordpiece(const me_vocab *v, const uint8_t *w, const uint32_t *bounds, size_t n_ch,
                 int32_t unk_id, uint64_t *hash, me_ids *out, me_err *e)
{
    int32_t mark = out->n;
    size_t start = 0; /* in characters */
    while (start < n_ch) {
        const me_vslot *t = start == 0 ? v->full : v->cont;
        size_t mask = start == 0 ? v->full_mask : v->cont_mask;
        size_t skip = start == 0 ? 0 : v->prefix_len;
        size_t max_len = start == 0 ? v->max_full : v->max_cont;
        size_t s0 = bounds[start];

        /* hash[k] = FNV of the first k characters from start. */
        uint64_t h = FNV_INIT;
        size_t k = 0;
        size_t b = s0;
        while (start + k < n_ch) {
            size_t nb = bounds[start + k + 1];
            if (nb - s0 > max_len)
                break;
            for (; b < nb; b++)
                h = fnv_step(h, w[b]);
            hash[++k] = h;
        }
        int32_t id = -1;
        for (; k > 0; k--) {
            size_t len = bounds[start + k] - s0;
            size_t i = table_probe(v, t, mask, skip, (const char *)w + s0, len, hash[k]);
            if (t[i].id >= 0) {
                id = t[i].id;
                break;
            }
        }
        if (id < 0) {
            out->n = mark;
            return me_ids_push(out, unk_id, e);
        }
        FORWARD_IF_ERROR(me_ids_push(out, id, e));
        start += k;
    }
    return MEDEMBED_OK;
}
