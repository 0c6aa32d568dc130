/*
 * batcher.c - the batching thread (see batcher.h for the contract).
 *
 * Queue discipline: FIFO over jobs. A batch takes the head job's "key"
 * (its embed flags) and walks the queue, taking sequences of
 * jobs with the same key in order until the next one would push the batch
 * over the token budget. Jobs with another key keep their place and lead a
 * later batch, so nothing starves. A job leaves the queue once all its
 * sequences are scheduled (or it is cancelled), and is finished when it is
 * out of the queue and none of its sequences is running.
 */
#include "batcher.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct part {
    srv_job *job;
    int32_t first, count; /* sequences [first, first+count) of job */
} part;

struct srv_batcher {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* work queued, or stop */
    srv_job *head, *tail;
    int stop;
    pthread_t thread;
    medembed_ctx *ctx;
    int32_t dim, budget;
    srv_metrics *metrics;

    /* Batch scratch, used by the batcher thread only. */
    medembed_tokens *set;
    float *out;
    size_t out_cap;
    part *parts;
    size_t parts_cap;
    struct pollfd *pfds;
    size_t pfds_cap;
    srv_job **pjobs;
    size_t pjobs_cap;
};

double srv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int same_key(const srv_job *a, const srv_job *b)
{
    return a->flags == b->flags;
}

/* Unlinks j from the queue (caller holds mu). */
static void dequeue(srv_batcher *b, srv_job *j)
{
    srv_job *prev = NULL;
    for (srv_job *x = b->head; x; prev = x, x = x->qnext) {
        if (x != j)
            continue;
        if (prev)
            prev->qnext = x->qnext;
        else
            b->head = x->qnext;
        if (b->tail == x)
            b->tail = prev;
        break;
    }
    j->qnext = NULL;
    j->queued = 0;
}

/* Marks j finished and wakes its thread if nothing of it is left in flight. */
static void maybe_finish(srv_job *j)
{
    if (!j->queued && j->running == 0 && !j->finished) {
        j->finished = 1;
        pthread_cond_signal(&j->cv);
    }
}

/* Drops queued jobs whose client hung up (caller holds mu). A peer that
 * closed its socket shows POLLRDHUP/POLLHUP/POLLERR without our reading
 * anything, so the connection's pending bytes are left alone. */
static void drop_gone(srv_batcher *b)
{
    size_t n = 0;
    for (srv_job *j = b->head; j; j = j->qnext)
        n += j->fd >= 0;
    if (n == 0)
        return;
    if (grow((void **)&b->pfds, &b->pfds_cap, n, sizeof *b->pfds) != 0 ||
        grow((void **)&b->pjobs, &b->pjobs_cap, n, sizeof *b->pjobs) != 0)
        return;
    n = 0;
    for (srv_job *j = b->head; j; j = j->qnext) {
        if (j->fd < 0)
            continue;
        b->pfds[n].fd = j->fd;
        b->pfds[n].events = POLLRDHUP;
        b->pfds[n].revents = 0;
        b->pjobs[n++] = j;
    }
    if (poll(b->pfds, (nfds_t)n, 0) <= 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!(b->pfds[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
            continue;
        srv_job *j = b->pjobs[i];
        srv_metrics_gauge_add(b->metrics, &b->metrics->queue_size, -(j->n - j->next_seq));
        j->status = SRV_JOB_CANCELLED;
        snprintf(j->err, sizeof j->err, "the client disconnected");
        dequeue(b, j);
        maybe_finish(j);
    }
}

/* Takes sequences for one batch (caller holds mu). Returns the number of
 * parts; *n_seq and *n_tok get the batch's totals. */
static size_t take_batch(srv_batcher *b, int32_t *n_seq, int32_t *n_tok, int *oom)
{
    srv_job *key = b->head;
    size_t np = 0;
    int32_t seqs = 0, toks = 0;
    double now = srv_now();
    srv_job *j = b->head;
    while (j) {
        srv_job *nextj = j->qnext;
        if (!same_key(j, key)) {
            j = nextj;
            continue;
        }
        int32_t first = j->next_seq;
        int32_t cnt = 0;
        while (j->next_seq < j->n) {
            int32_t len = j->lens[j->next_seq];
            if (seqs > 0 && (int64_t)toks + len > b->budget)
                break;
            toks += len;
            seqs++;
            cnt++;
            j->next_seq++;
        }
        if (cnt > 0) {
            if (grow((void **)&b->parts, &b->parts_cap, np + 1, sizeof *b->parts) != 0) {
                /* Put the sequences back; the batch ends here. */
                j->next_seq = first;
                seqs -= cnt;
                *oom = np == 0;
                break;
            }
            if (first == 0)
                j->queue_seconds = now - j->t_submit;
            b->parts[np].job = j;
            b->parts[np].first = first;
            b->parts[np].count = cnt;
            np++;
            j->running += cnt;
            if (j->next_seq == j->n)
                dequeue(b, j);
        }
        if (j->next_seq < j->n && j->queued)
            break; /* the budget is full */
        j = nextj;
    }
    *n_seq = seqs;
    *n_tok = toks;
    return np;
}

/* Runs one batch outside the lock; returns the library status. */
static int run_batch(srv_batcher *b, size_t np, int32_t n_seq, int32_t n_tok, char *err,
                     size_t err_len)
{
    const srv_job *key = b->parts[0].job;
    (void)n_tok;
    if (grow((void **)&b->out, &b->out_cap, (size_t)n_seq * (size_t)b->dim, sizeof *b->out) != 0)
        goto oom;
    if (!b->set && medembed_tokens_create(medembed_ctx_model(b->ctx), &b->set) != MEDEMBED_OK)
        goto oom;
    medembed_tokens_clear(b->set);
    for (size_t p = 0; p < np; p++) {
        const part *pt = &b->parts[p];
        if (medembed_tokens_append(b->set, pt->job->set, pt->first, pt->count) != MEDEMBED_OK)
            goto oom;
    }
    int rc = medembed_ctx_embed_tokens(b->ctx, b->set, key->flags, b->budget, b->out);
    if (rc != MEDEMBED_OK) {
        const char *m = medembed_ctx_last_error(b->ctx);
        snprintf(err, err_len, "inference failed: %s", *m ? m : medembed_status_str(rc));
        return rc;
    }
    /* Rows go straight into the jobs' buffers: a job cannot be freed while
     * it has running sequences. */
    int32_t s = 0;
    for (size_t p = 0; p < np; p++) {
        const part *pt = &b->parts[p];
        memcpy(pt->job->out + (size_t)pt->first * (size_t)b->dim,
               b->out + (size_t)s * (size_t)b->dim,
               sizeof *b->out * (size_t)pt->count * (size_t)b->dim);
        s += pt->count;
    }
    return MEDEMBED_OK;
oom:
    snprintf(err, err_len, "out of memory for a batch of %d sequences", n_seq);
    return MEDEMBED_ERR_NOMEM;
}

static void *batcher_main(void *arg)
{
    srv_batcher *b = arg;
    char err[256];
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->stop)
            pthread_cond_wait(&b->cv, &b->mu);
        if (!b->head)
            break; /* stopping, and the queue is empty */
        drop_gone(b);
        if (!b->head)
            continue;
        int32_t n_seq = 0, n_tok = 0;
        int oom = 0;
        size_t np = take_batch(b, &n_seq, &n_tok, &oom);
        if (np == 0) {
            /* Out of memory for even one part: fail the head job. */
            srv_job *j = b->head;
            if (!j)
                continue;
            j->status = SRV_JOB_FAILED;
            snprintf(j->err, sizeof j->err, "out of memory while batching");
            srv_metrics_gauge_add(b->metrics, &b->metrics->queue_size, -(j->n - j->next_seq));
            dequeue(b, j);
            maybe_finish(j);
            continue;
        }
        srv_metrics_gauge_add(b->metrics, &b->metrics->queue_size, -n_seq);
        pthread_mutex_unlock(&b->mu);

        double t0 = srv_now();
        err[0] = 0;
        int rc = run_batch(b, np, n_seq, n_tok, err, sizeof err);
        double dt = srv_now() - t0;
        srv_metrics_batch(b->metrics, n_seq, n_tok, dt, rc == MEDEMBED_OK);

        pthread_mutex_lock(&b->mu);
        for (size_t p = 0; p < np; p++) {
            srv_job *j = b->parts[p].job;
            j->running -= b->parts[p].count;
            j->done += b->parts[p].count;
            j->infer_seconds += dt;
            if (rc != MEDEMBED_OK && j->status == SRV_JOB_OK) {
                j->status = SRV_JOB_FAILED;
                snprintf(j->err, sizeof j->err, "%s", err);
                if (j->queued) {
                    srv_metrics_gauge_add(b->metrics, &b->metrics->queue_size,
                                          -(j->n - j->next_seq));
                    dequeue(b, j);
                }
            }
            maybe_finish(j);
        }
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int srv_batcher_create(medembed_ctx *ctx, int32_t dim, int32_t max_batch_tokens,
                       srv_metrics *metrics, srv_batcher **out)
{
    srv_batcher *b = calloc(1, sizeof *b);
    if (!b)
        return -1;
    b->ctx = ctx;
    b->dim = dim;
    b->budget = max_batch_tokens;
    b->metrics = metrics;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (pthread_create(&b->thread, NULL, batcher_main, b) != 0) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        free(b);
        return -1;
    }
    *out = b;
    return 0;
}

void srv_batcher_run(srv_batcher *b, srv_job *job)
{
    pthread_cond_init(&job->cv, NULL);
    job->status = SRV_JOB_OK;
    job->err[0] = 0;
    job->queue_seconds = 0;
    job->infer_seconds = 0;
    job->next_seq = job->done = job->running = 0;
    job->finished = 0;
    job->qnext = NULL;
    job->t_submit = srv_now();
    pthread_mutex_lock(&b->mu);
    job->queued = 1;
    if (b->tail)
        b->tail->qnext = job;
    else
        b->head = job;
    b->tail = job;
    srv_metrics_gauge_add(b->metrics, &b->metrics->queue_size, job->n);
    pthread_cond_signal(&b->cv);
    while (!job->finished)
        pthread_cond_wait(&job->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    pthread_cond_destroy(&job->cv);
}

void srv_batcher_free(srv_batcher *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    medembed_ctx_free(b->ctx);
    medembed_tokens_free(b->set);
    free(b->out);
    free(b->parts);
    free(b->pfds);
    free(b->pjobs);
    free(b);
}
