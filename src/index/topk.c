/*
 * topk.c - bounded top-k selection with a binary min-heap: the root is the
 * worst kept entry, so a candidate is one compare away from rejection.
 * Order: higher score first; equal scores prefer the smaller id, which makes
 * results independent of the order candidates arrive in (threads, graph).
 */
#include <math.h>
#include <stdlib.h>

#include "index/index.h"

/* 1 if (sa, ia) ranks below (sb, ib). */
static inline int worse(float sa, int64_t ia, float sb, int64_t ib)
{
    return sa < sb || (sa == sb && ia > ib);
}

int me_topk_init(me_topk *t, int32_t k)
{
    t->k = k;
    t->n = 0;
    t->score = malloc(sizeof *t->score * (size_t)(k > 0 ? k : 1));
    t->id = malloc(sizeof *t->id * (size_t)(k > 0 ? k : 1));
    if (!t->score || !t->id) {
        me_topk_free(t);
        return MEDEMBED_ERR_NOMEM;
    }
    return MEDEMBED_OK;
}

void me_topk_free(me_topk *t)
{
    free(t->score);
    free(t->id);
    t->score = NULL;
    t->id = NULL;
    t->n = t->k = 0;
}

static void sift_down(me_topk *t, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n && worse(t->score[l], t->id[l], t->score[m], t->id[m]))
            m = l;
        if (r < t->n && worse(t->score[r], t->id[r], t->score[m], t->id[m]))
            m = r;
        if (m == i)
            return;
        float s = t->score[i];
        int64_t d = t->id[i];
        t->score[i] = t->score[m];
        t->id[i] = t->id[m];
        t->score[m] = s;
        t->id[m] = d;
        i = m;
    }
}

void me_topk_push(me_topk *t, float score, int64_t id)
{
    if (t->k <= 0)
        return;
    if (t->n < t->k) {
        int32_t i = t->n++;
        while (i > 0) {
            int32_t p = (i - 1) / 2;
            if (!worse(score, id, t->score[p], t->id[p]))
                break;
            t->score[i] = t->score[p];
            t->id[i] = t->id[p];
            i = p;
        }
        t->score[i] = score;
        t->id[i] = id;
        return;
    }
    if (!worse(t->score[0], t->id[0], score, id))
        return;
    t->score[0] = score;
    t->id[0] = id;
    sift_down(t, 0);
}

float me_topk_floor(const me_topk *t)
{
    return t->n < t->k ? -INFINITY : t->score[0];
}

void me_topk_sort(me_topk *t)
{
    /* Heap sort: pop the worst to the end repeatedly -> best first. */
    int32_t n = t->n;
    while (t->n > 1) {
        int32_t last = t->n - 1;
        float s = t->score[0];
        int64_t d = t->id[0];
        t->score[0] = t->score[last];
        t->id[0] = t->id[last];
        t->score[last] = s;
        t->id[last] = d;
        t->n--;
        sift_down(t, 0);
    }
    t->n = n;
}
