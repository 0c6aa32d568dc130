/*
 * pool.h - a persistent worker pool (shaped like zstd's pool.h, scheduled
 * like ggml): me_pool_run() hands out task indices 0..n-1 from an atomic
 * counter to the caller plus n_threads-1 workers and returns when all are
 * done. Each task must write a disjoint part of the output, computed in a
 * fixed order, so results never depend on which thread ran which task.
 */
#ifndef ME_POOL_H
#define ME_POOL_H

#include <stdint.h>

typedef struct me_pool me_pool;

/* fn(arg, task_index, thread_index); thread_index in [0, n_threads). */
typedef void (*me_task_fn)(void *arg, int64_t task, int32_t thread);

/* Most threads a pool has (larger requests are capped). */
#define ME_POOL_MAX_THREADS 256

/* n_threads total, the calling thread included; <= 0 means all online CPUs
 * (at most ME_POOL_MAX_THREADS). Returns NULL on failure. */
me_pool *me_pool_create(int32_t n_threads);
void me_pool_free(me_pool *p);
int32_t me_pool_threads(const me_pool *p);

/* Runs fn for every task in [0, n_tasks). Not reentrant: one caller at a time. */
void me_pool_run(me_pool *p, int64_t n_tasks, me_task_fn fn, void *arg);

#endif
