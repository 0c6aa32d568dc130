/*
 * batcher.h - dynamic batching: one thread owns the medembed_ctx and packs
 * the sequences of concurrent requests into shared forward passes.
 *
 * Connection threads tokenize their own inputs (in parallel), then hand a
 * srv_job to srv_batcher_run(), which blocks until every sequence of the job
 * is embedded. The batcher thread takes queued sequences in arrival order,
 * up to --max-batch-tokens tokens per call (always at least one sequence),
 * from jobs that share the same embed flags, appends them to one token set
 * and makes one medembed_ctx_embed_tokens() call. The library guarantees
 * that a sequence's
 * vector does not depend on the other sequences in the call, so a request's
 * result is bit-identical to embedding it alone.
 *
 * A job whose client has disconnected (its socket reports hang-up) is
 * dropped from the queue before the next batch is formed; sequences already
 * in a running batch finish and are discarded.
 */
#ifndef MEDEMBED_SERVER_BATCHER_H
#define MEDEMBED_SERVER_BATCHER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "medembed.h"
#include "metrics.h"

typedef enum srv_job_status {
    SRV_JOB_OK = 0,
    SRV_JOB_FAILED = 1,   /* err says why */
    SRV_JOB_CANCELLED = 2 /* the client went away, or the batcher is stopping */
} srv_job_status;

typedef struct srv_job {
    /* Set by the caller; read-only while the job runs. */
    int32_t n;                  /* sequences */
    const medembed_tokens *set; /* the n sequences (srv_prepare) */
    const int32_t *lens;        /* n token counts */
    uint32_t flags;             /* MEDEMBED_F_* for the embed call */
    int fd;                   /* client socket for hang-up checks, or -1 */
    float *out;               /* OUT: n * dim floats */

    /* Results. */
    srv_job_status status;
    char err[256];
    double queue_seconds; /* from submit until its first sequence entered a batch */
    double infer_seconds; /* summed duration of the forward calls it took part in */

    /* Private to batcher.c (guarded by the batcher's mutex). */
    int32_t next_seq; /* first sequence not yet scheduled */
    int32_t done;     /* sequences finished */
    int32_t running;  /* sequences in the batch being computed */
    int queued, finished;
    double t_submit;
    struct srv_job *qnext;
    pthread_cond_t cv;
} srv_job;

typedef struct srv_batcher srv_batcher;

/* Starts the batcher thread. ctx is owned by the batcher from now on (it is
 * freed by srv_batcher_free). Returns 0, or -1 when out of resources. */
int srv_batcher_create(medembed_ctx *ctx, int32_t dim, int32_t max_batch_tokens,
                       srv_metrics *metrics, srv_batcher **out);

/* Queues job and blocks until it is finished (OK, FAILED or CANCELLED).
 * Thread-safe; call from any number of threads. */
void srv_batcher_run(srv_batcher *b, srv_job *job);

/* Finishes every queued job, stops the thread, frees the ctx. NULL is
 * accepted. No srv_batcher_run() may start after this is called. */
void srv_batcher_free(srv_batcher *b);

/* Seconds on a monotonic clock. */
double srv_now(void);

#endif
