/* pool.c - persistent pthread pool with an atomic task counter. Workers
 * spin briefly for the next job (short gaps between the GEMMs of a forward
 * pass) and then sleep on a condition variable. */
#include "thread/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct me_pool {
    int32_t n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_cond_t done_cv;
    /* current job */
    me_task_fn fn;
    void *arg;
    int64_t n_tasks;
    atomic_llong next;
    atomic_int n_active; /* workers still inside the current job */
    atomic_uint generation;
    int stop;
};

typedef struct {
    me_pool *p;
    int32_t index;
} worker_arg;

static void run_tasks(me_pool *p, int32_t thread)
{
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks)
            break;
        p->fn(p->arg, t, thread);
    }
}

static void *worker_main(void *va)
{
    worker_arg *wa = va;
    me_pool *p = wa->p;
    int32_t index = wa->index;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        /* Spin a little before sleeping: jobs arrive back to back. */
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        for (int spin = 0; g == seen && spin < 20000; spin++) {
            sched_yield();
            g = atomic_load_explicit(&p->generation, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while (!p->stop && atomic_load(&p->generation) == seen)
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
            g = atomic_load(&p->generation);
        }
        if (p->stop)
            return NULL;
        seen = g;
        run_tasks(p, index);
        if (atomic_fetch_sub_explicit(&p->n_active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

me_pool *me_pool_create(int32_t n_threads)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int32_t)n : 1;
    }
    if (n_threads > 256)
        n_threads = 256;
    me_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->n_active, 0);
    atomic_init(&p->generation, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            free(p);
            return NULL;
        }
        for (int32_t i = 1; i < n_threads; i++) {
            /* Filled before the thread starts: the worker reads it at once. */
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) {
                wa->p = p;
                wa->index = i;
            }
            if (!wa || pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                p->n_threads = i; /* only i-1 workers exist */
                me_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void me_pool_free(me_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int32_t i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i - 1], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

int32_t me_pool_threads(const me_pool *p)
{
    return p ? p->n_threads : 1;
}

void me_pool_run(me_pool *p, int64_t n_tasks, me_task_fn fn, void *arg)
{
    if (n_tasks <= 0)
        return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->n_active, p->n_threads - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    /* Wait for workers: spin briefly, then sleep. */
    for (int spin = 0; spin < 100000 && atomic_load(&p->n_active) > 0; spin++)
        sched_yield();
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->n_active) > 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
