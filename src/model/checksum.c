/*
 * checksum.c - a fast 64-bit checksum of large byte ranges, summed by all
 * CPUs: pack cache files check their data with it, and the model identity
 * covers every weight byte with it (model/identity.c).
 */
#include "model/checksum.h"

#include <stdlib.h>
#include <string.h>

#include "thread/pool.h"

/* Fletcher-style sums in 8 lanes of 64-bit words over 64-byte steps: lane
 * l keeps a = the sum of its words and b = the sum of the running a's, so
 * every single changed word changes a, and swapped steps change b. It
 * guards against torn or damaged files, not against someone who forges one
 * (a cache directory is trusted like the model folder). Over steps 1..T,
 * b = sum_t (T - t + 1) w_t, so sums of consecutive pieces combine:
 * a = a1 + a2, b = b1 + b2 + T2 a1 (T2: the second piece's steps). */
typedef struct {
    uint64_t a[8], b[8], steps;
} me_sums;

/* two lanes per operation with the baseline SSE2 (GCC / clang vectors) */
typedef uint64_t me_v2 __attribute__((vector_size(16)));

static void me_sums_of(const uint8_t *p, size_t n, me_sums *s)
{
    me_v2 a[4] = {{0}}, b[4] = {{0}};
    size_t steps = n / 64;
    for (size_t i = 0; i < steps; i++, p += 64)
        for (int l = 0; l < 4; l++) {
            me_v2 w;
            memcpy(&w, p + 16 * l, 16);
            a[l] += w;
            b[l] += a[l];
        }
    for (int l = 0; l < 4; l++) {
        s->a[2 * l] = a[l][0];
        s->a[2 * l + 1] = a[l][1];
        s->b[2 * l] = b[l][0];
        s->b[2 * l + 1] = b[l][1];
    }
    s->steps = steps;
}

static void me_sums_append(me_sums *s, const me_sums *t)
{
    for (int l = 0; l < 8; l++) {
        s->b[l] += t->b[l] + t->steps * s->a[l];
        s->a[l] += t->a[l];
    }
    s->steps += t->steps;
}

static uint64_t me_sums_digest(const me_sums *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int l = 0; l < 8; l++) {
        h = (h ^ s->a[l]) * 0x100000001b3ull;
        h = (h ^ s->b[l]) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h;
}

/* Pieces of SUMS_PIECE bytes summed by all CPUs: the first read of a
 * mapped file is bound by page walks (one per 4 KiB page), which
 * parallelize (docs/PERFORMANCE.md, "Pack cache"). */
#define SUMS_PIECE ((size_t)4 << 20)
typedef struct {
    const uint8_t *p;
    size_t n;
    me_sums *part;
} sums_job;

static void sums_task(void *arg, int64_t t, int32_t thread)
{
    const sums_job *j = arg;
    size_t at = (size_t)t * SUMS_PIECE, n = j->n - at < SUMS_PIECE ? j->n - at : SUMS_PIECE;
    me_sums_of(j->p + at, n, &j->part[t]);
}

uint64_t me_checksum64(const uint8_t *p, size_t n)
{
    size_t pieces = (n + SUMS_PIECE - 1) / SUMS_PIECE;
    me_sums all, *part = pieces > 1 ? malloc(sizeof *part * pieces) : NULL;
    me_pool *pool = part ? me_pool_create(0) : NULL;
    if (!part) {
        me_sums_of(p, n, &all);
    } else {
        sums_job j = {p, n, part};
        me_pool_run(pool, (int64_t)pieces, sums_task, &j); /* a NULL pool runs them here */
        all = part[0];
        for (size_t i = 1; i < pieces; i++)
            me_sums_append(&all, &part[i]);
    }
    me_pool_free(pool);
    free(part);
    return me_sums_digest(&all);
}

