/*
 * flat.c - exact search: every chunk is scored with the SIMD dot product
 * (vec.c), a document keeps its best chunk, and the best k documents win.
 *
 * Threads split the documents into contiguous ranges taken from the pool's
 * atomic counter; each thread keeps its own bounded heap and the heaps are
 * merged at the end. The heap order (score, then smaller chunk index) is
 * total, so the result does not depend on the thread count or on which
 * thread took which range.
 */
#include <stdlib.h>
#include <string.h>

#include "index/index.h"

/* Below this many multiply-adds a single thread is faster than waking the
 * pool. A variable so that tests can force the threaded path on small data. */
int64_t me_flat_min_parallel = (int64_t)1 << 18;
#define FLAT_TASKS_PER_THREAD 4

typedef struct flat_job {
    const medembed_index *ix;
    const float *q;
    const uint8_t *allowed;
    const me_vec_kern *k;
    int64_t per_task;
    me_topk *local; /* one per pool thread */
} flat_job;

static void scan_docs(const flat_job *j, int64_t d0, int64_t d1, me_topk *t)
{
    const medembed_index *ix = j->ix;
    for (int64_t d = d0; d < d1; d++) {
        if (j->allowed && !j->allowed[d])
            continue;
        int64_t c0 = ix->doc_chunk0[d], c1 = c0 + ix->doc_n_chunks[d];
        float best = me_vecs_score(&ix->vecs, j->k, j->q, c0);
        int64_t bc = c0;
        for (int64_t c = c0 + 1; c < c1; c++) {
            float s = me_vecs_score(&ix->vecs, j->k, j->q, c);
            if (s > best) {
                best = s;
                bc = c;
            }
        }
        me_topk_push(t, best, bc);
    }
}

static void flat_task(void *arg, int64_t task, int32_t thread)
{
    flat_job *j = arg;
    int64_t d0 = task * j->per_task;
    int64_t d1 = d0 + j->per_task;
    if (d1 > j->ix->n_docs)
        d1 = j->ix->n_docs;
    scan_docs(j, d0, d1, &j->local[thread]);
}

int me_flat_search(medembed_index *ix, const float *q, const uint8_t *allowed, int32_t n_threads,
                   me_topk *out, me_err *e)
{
    flat_job j = {ix, q, allowed, me_vec_kern_get(), 0, NULL};
    out->n = 0;
    int64_t work = ix->vecs.n * (int64_t)ix->dim;
    int use_pool = n_threads != 1 && work >= me_flat_min_parallel && ix->n_docs > 1;
    if (use_pool) {
        pthread_mutex_lock(&ix->pool_mu);
        if (!ix->pool)
            ix->pool = me_pool_create(0);
        if (!ix->pool || me_pool_threads(ix->pool) < 2) {
            pthread_mutex_unlock(&ix->pool_mu);
            use_pool = 0;
        }
        /* else: the mutex is held for the run (me_pool_run is one caller
         * at a time); concurrent searches wait here rather than oversubscribe. */
    }
    if (!use_pool) {
        scan_docs(&j, 0, ix->n_docs, out);
        return MEDEMBED_OK;
    }
    int32_t nt = me_pool_threads(ix->pool);
    j.local = calloc((size_t)nt, sizeof *j.local);
    int rc = j.local ? MEDEMBED_OK : MEDEMBED_ERR_NOMEM;
    for (int32_t t = 0; t < nt && rc == MEDEMBED_OK; t++)
        rc = me_topk_init(&j.local[t], out->k);
    if (rc == MEDEMBED_OK) {
        int64_t n_tasks = (int64_t)nt * FLAT_TASKS_PER_THREAD;
        if (n_tasks > ix->n_docs)
            n_tasks = ix->n_docs;
        j.per_task = (ix->n_docs + n_tasks - 1) / n_tasks;
        n_tasks = (ix->n_docs + j.per_task - 1) / j.per_task;
        me_pool_run(ix->pool, n_tasks, flat_task, &j);
    }
    pthread_mutex_unlock(&ix->pool_mu);
    for (int32_t t = 0; j.local && t < nt; t++) {
        for (int32_t i = 0; i < j.local[t].n; i++)
            me_topk_push(out, j.local[t].score[i], j.local[t].id[i]);
        me_topk_free(&j.local[t]);
    }
    free(j.local);
    RETURN_ERROR_IF(rc != MEDEMBED_OK, e, rc, "out of memory for search heaps");
    return MEDEMBED_OK;
}
