/*
 * hnsw.c - Hierarchical Navigable Small World graph (Malkov & Yashunin,
 * "Efficient and robust approximate nearest neighbor search using HNSW
 * graphs", https://arxiv.org/abs/1603.09320), written for our vectors.
 *
 * Similarity is the dot product (higher is better), the score the index
 * reports, so no 1 - dot conversion is needed anywhere: every comparison is
 * "greater score wins". The graph stores only links; vectors stay in the
 * index's me_vecs (f32 or int8), so the graph costs (2M + 1) * 4 bytes per
 * node on layer 0 plus ~1/M of that above.
 *
 * Choices, as in the paper and hnswlib:
 *  - level l ~ floor(-ln(U) / ln(M)); M links per node on layers >= 1, 2M on
 *    layer 0 (Alg. 1).
 *  - neighbour selection by the heuristic of Alg. 4 (keep a candidate only
 *    if it is closer to the new node than to every neighbour kept so far),
 *    which keeps links spread out and recall high on clustered data.
 *  - an insertion descends its layers as Alg. 1 does: the search of each
 *    layer starts from all ef_construction results of the layer above
 *    (hnswlib keeps only the closest one; all of them give better recall on
 *    hard data at no measurable build cost).
 *  - a filtered search traverses every node but only accepted nodes enter
 *    the result set and its stopping bound (as hnswlib's filtered search),
 *    so filters apply during the search.
 *
 * Builds insert nodes in batches, on the pool when there is one. A batch
 * of B new nodes runs in two parallel phases over a graph that does not
 * change under them:
 *  1. each new node searches the graph as it stood before the batch (Alg. 2
 *     with ef_construction), adds the batch's other nodes as candidates
 *     (B - 1 more scores, so nodes of one batch still find each other), and
 *     selects its links with the heuristic;
 *  2. the reverse links are grouped by the node that receives them, and each
 *     receiving node takes its new links in node order, shrinking its list
 *     with the heuristic when full.
 * Neither phase depends on which thread runs what, so a graph is the same
 * for any thread count, with or without a pool: it depends only on the
 * vectors, the seed and the sizes of the me_hnsw_add calls. No locks are
 * taken. B grows with the graph (1 at the start, so that the first nodes
 * are inserted one by one as in Alg. 1) up to HNSW_MAX_BATCH. Searches are
 * read-only and run concurrently, each with its own visited array taken
 * from a small free list.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/index.h"

#define HNSW_MAX_LEVEL 32
#define HNSW_MAX_M 128
#define HNSW_MAX_NODES ((int64_t)1 << 31)
#define HNSW_MAGIC "MEHNSW01"
#define VIS_KEEP 16
/* A batch is at most this many nodes and at most 1/HNSW_BATCH_DIV of the
 * graph it is inserted into. */
#define HNSW_MAX_BATCH 128
#define HNSW_BATCH_DIV 8

typedef struct visited {
    uint32_t *mark;
    int64_t cap;
    uint32_t stamp;
} visited;

struct me_hnsw {
    int32_t m, m0, efc;
    double ml;
    uint64_t rng;
    int64_t n, cap;
    uint8_t *level;   /* (cap) */
    int32_t *l0;      /* (cap, 1 + m0): count, then links */
    int32_t **up;     /* (cap): level * (1 + m) ints, or NULL for level 0 */
    int64_t entry;
    int32_t max_level;
    pthread_mutex_t vis_mu;
    visited *vis_free[VIS_KEEP];
    int n_vis_free;
    /* distance evaluations, reported under MEDEMBED_HNSW_STATS */
    atomic_llong n_dist_build, n_dist_search, n_search;
    int64_t n_built;
};

/* ------------------------------------------------------------ helpers */

static inline int32_t *links(const me_hnsw *g, int64_t node, int32_t l)
{
    if (l == 0)
        return g->l0 + (size_t)node * (size_t)(1 + g->m0);
    return g->up[node] + (size_t)(l - 1) * (size_t)(1 + g->m);
}

static inline int32_t max_links(const me_hnsw *g, int32_t l)
{
    return l == 0 ? g->m0 : g->m;
}

/* Starts fetching row i of v, to be scored a little later. */
static inline void prefetch_row(const me_vecs *v, int64_t i)
{
    const char *p;
    size_t bytes;
    if (v->dtype == MEDEMBED_VEC_INT8) {
        p = (const char *)(v->q + (size_t)i * (size_t)v->dim);
        bytes = (size_t)v->dim;
    } else {
        p = (const char *)(v->f + (size_t)i * (size_t)v->dim);
        bytes = sizeof(float) * (size_t)v->dim;
    }
    if (bytes > 1024)
        bytes = 1024;
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch(p + o, 0, 3);
}

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int32_t random_level(me_hnsw *g)
{
    double u = ((double)(rng_next(&g->rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double l = -log(u) * g->ml;
    return l >= HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : (int32_t)l;
}

int me_hnsw_create(const me_hnsw_params *p, me_hnsw **out)
{
    if (!p || p->m < 2 || p->m > HNSW_MAX_M || p->ef_construction < 1 || !out)
        return MEDEMBED_ERR_ARG;
    me_hnsw *g = calloc(1, sizeof *g);
    if (!g)
        return MEDEMBED_ERR_NOMEM;
    g->m = p->m;
    g->m0 = 2 * p->m;
    g->efc = p->ef_construction;
    g->ml = 1.0 / log((double)p->m);
    g->rng = p->seed ? p->seed : 0x5eed5eedull;
    g->entry = -1;
    pthread_mutex_init(&g->vis_mu, NULL);
    atomic_init(&g->n_dist_build, 0);
    atomic_init(&g->n_dist_search, 0);
    atomic_init(&g->n_search, 0);
    *out = g;
    return MEDEMBED_OK;
}

void me_hnsw_free(me_hnsw *g)
{
    if (!g)
        return;
    const char *st = getenv("MEDEMBED_HNSW_STATS");
    if (st && *st && strcmp(st, "0") != 0 && (g->n_built > 0 || atomic_load(&g->n_search) > 0))
        fprintf(stderr,
                "medembed: hnsw stats: %lld nodes inserted with %lld distance evaluations; "
                "%lld searches with %lld distance evaluations\n",
                (long long)g->n_built, (long long)atomic_load(&g->n_dist_build),
                (long long)atomic_load(&g->n_search), (long long)atomic_load(&g->n_dist_search));
    for (int64_t i = 0; i < g->n; i++)
        free(g->up[i]);
    free(g->up);
    free(g->l0);
    free(g->level);
    for (int i = 0; i < g->n_vis_free; i++) {
        free(g->vis_free[i]->mark);
        free(g->vis_free[i]);
    }
    pthread_mutex_destroy(&g->vis_mu);
    free(g);
}

int64_t me_hnsw_size(const me_hnsw *g)
{
    return g ? g->n : 0;
}

static int reserve(me_hnsw *g, int64_t n)
{
    if (n <= g->cap)
        return MEDEMBED_OK;
    int64_t cap = g->cap ? g->cap : 1024;
    while (cap < n)
        cap *= 2;
    uint8_t *lv = realloc(g->level, (size_t)cap);
    if (!lv)
        return MEDEMBED_ERR_NOMEM;
    g->level = lv;
    int32_t *l0 = realloc(g->l0, sizeof *l0 * (size_t)cap * (size_t)(1 + g->m0));
    if (!l0)
        return MEDEMBED_ERR_NOMEM;
    g->l0 = l0;
    int32_t **up = realloc(g->up, sizeof *up * (size_t)cap);
    if (!up)
        return MEDEMBED_ERR_NOMEM;
    g->up = up;
    g->cap = cap;
    return MEDEMBED_OK;
}

/* --------------------------------------------------------- visited set */

static visited *vis_get(const me_hnsw *gc, int64_t n)
{
    me_hnsw *g = (me_hnsw *)gc; /* the free list is the only mutable part */
    visited *v = NULL;
    pthread_mutex_lock(&g->vis_mu);
    if (g->n_vis_free > 0)
        v = g->vis_free[--g->n_vis_free];
    pthread_mutex_unlock(&g->vis_mu);
    if (!v) {
        v = calloc(1, sizeof *v);
        if (!v)
            return NULL;
    }
    if (v->cap < n) {
        int64_t cap = n + n / 2 + 64;
        uint32_t *mk = calloc((size_t)cap, sizeof *mk);
        if (!mk) {
            free(v->mark);
            free(v);
            return NULL;
        }
        free(v->mark);
        v->mark = mk;
        v->cap = cap;
        v->stamp = 0;
    }
    if (++v->stamp == 0) {
        memset(v->mark, 0, sizeof *v->mark * (size_t)v->cap);
        v->stamp = 1;
    }
    return v;
}

/* A fresh stamp: every node reads as not visited. */
static void vis_reset(visited *v)
{
    if (++v->stamp == 0) {
        memset(v->mark, 0, sizeof *v->mark * (size_t)v->cap);
        v->stamp = 1;
    }
}

static void vis_put(const me_hnsw *gc, visited *v)
{
    me_hnsw *g = (me_hnsw *)gc;
    if (!v)
        return;
    pthread_mutex_lock(&g->vis_mu);
    if (g->n_vis_free < VIS_KEEP) {
        g->vis_free[g->n_vis_free++] = v;
        v = NULL;
    }
    pthread_mutex_unlock(&g->vis_mu);
    if (v) {
        free(v->mark);
        free(v);
    }
}

/* -------------------------------------------------- candidate max-heap */

typedef struct cand_heap {
    int32_t n, cap;
    float *s;
    int64_t *id;
} cand_heap;

static int ch_push(cand_heap *h, float s, int64_t id)
{
    if (h->n == h->cap) {
        int32_t cap = h->cap ? h->cap * 2 : 256;
        float *ns = realloc(h->s, sizeof *ns * (size_t)cap);
        if (!ns)
            return MEDEMBED_ERR_NOMEM;
        h->s = ns;
        int64_t *ni = realloc(h->id, sizeof *ni * (size_t)cap);
        if (!ni)
            return MEDEMBED_ERR_NOMEM;
        h->id = ni;
        h->cap = cap;
    }
    int32_t i = h->n++;
    while (i > 0) {
        int32_t p = (i - 1) / 2;
        if (h->s[p] >= s)
            break;
        h->s[i] = h->s[p];
        h->id[i] = h->id[p];
        i = p;
    }
    h->s[i] = s;
    h->id[i] = id;
    return MEDEMBED_OK;
}

static void ch_pop(cand_heap *h, float *s, int64_t *id)
{
    *s = h->s[0];
    *id = h->id[0];
    h->n--;
    float ls = h->s[h->n];
    int64_t li = h->id[h->n];
    int32_t i = 0;
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = -1;
        float ms = ls;
        if (l < h->n && h->s[l] > ms) {
            m = l;
            ms = h->s[l];
        }
        if (r < h->n && h->s[r] > ms)
            m = r;
        if (m < 0)
            break;
        h->s[i] = h->s[m];
        h->id[i] = h->id[m];
        i = m;
    }
    h->s[i] = ls;
    h->id[i] = li;
}

static void ch_free(cand_heap *h)
{
    free(h->s);
    free(h->id);
}

/* --------------------------------------------------------- search layer */

/* Beam search on layer l from entry points eps (n_eps), keeping the best
 * `ef` accepted nodes in W (W->k == ef). C is the caller's candidate heap
 * (emptied here, kept allocated); *nd counts the distance evaluations. */
static int search_layer(const me_hnsw *g, const me_vecs *v, const me_vec_kern *k, const float *q,
                        const int64_t *eps, int32_t n_eps, int32_t l, me_hnsw_accept_fn accept,
                        void *arg, me_topk *W, visited *vis, cand_heap *C, int64_t *nd)
{
    int rc = MEDEMBED_OK;
    int64_t count = 0;
    C->n = 0;
    for (int32_t i = 0; i < n_eps && rc == MEDEMBED_OK; i++) {
        int64_t e = eps[i];
        if (vis->mark[e] == vis->stamp)
            continue;
        vis->mark[e] = vis->stamp;
        float s = me_vecs_score(v, k, q, e);
        count++;
        rc = ch_push(C, s, e);
        if (!accept || accept(arg, e))
            me_topk_push(W, s, e);
    }
    while (rc == MEDEMBED_OK && C->n > 0) {
        float cs;
        int64_t c;
        ch_pop(C, &cs, &c);
        if (W->n >= W->k && cs < me_topk_floor(W))
            break;
        const int32_t *L = links(g, c, l);
        int32_t cnt = L[0];
        if (cnt > 0)
            prefetch_row(v, L[1]);
        for (int32_t j = 1; j <= cnt; j++) {
            int64_t e = L[j];
            if (j < cnt)
                prefetch_row(v, L[j + 1]);
            if (vis->mark[e] == vis->stamp)
                continue;
            vis->mark[e] = vis->stamp;
            float s = me_vecs_score(v, k, q, e);
            count++;
            if (W->n < W->k || s > me_topk_floor(W)) {
                rc = ch_push(C, s, e);
                if (rc != MEDEMBED_OK)
                    break;
                if (!accept || accept(arg, e))
                    me_topk_push(W, s, e);
            }
        }
    }
    *nd += count;
    return rc;
}

/* Greedy descent from the entry point down to layer `stop` + 1. */
static int64_t greedy(const me_hnsw *g, const me_vecs *v, const me_vec_kern *k, const float *q,
                      int64_t entry, int32_t top, int32_t stop, int64_t *nd)
{
    int64_t ep = entry;
    float best = me_vecs_score(v, k, q, ep);
    int64_t count = 1;
    for (int32_t l = top; l > stop; l--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            const int32_t *L = links(g, ep, l);
            for (int32_t j = 1; j <= L[0]; j++) {
                float s = me_vecs_score(v, k, q, L[j]);
                count++;
                if (s > best || (s == best && L[j] < ep)) {
                    best = s;
                    ep = L[j];
                    changed = 1;
                }
            }
        }
    }
    *nd += count;
    return ep;
}

/* ------------------------------------------------------------- insert */

/* One thread's buffers for a build, allocated once per me_hnsw_add. */
typedef struct worker {
    float *q, *tmp, *tmp2; /* (dim) each */
    me_topk W;             /* (ef_construction) */
    cand_heap C;
    visited *vis;
    int64_t *ids;          /* (ef_construction + HNSW_MAX_BATCH) candidates */
    int64_t *eps;          /* (ef_construction) entry points of the next layer down */
    float *sc;
    int32_t *sel;          /* (m0 + 1) */
    int64_t nd;            /* distance evaluations */
} worker;

/* Similarity of two stored rows. */
static float pair_score(const me_vecs *v, const me_vec_kern *k, int64_t a, int64_t b, float *tmp)
{
    if (v->dtype == MEDEMBED_VEC_INT8) {
        me_vecs_row(v, a, tmp);
        return me_vecs_score(v, k, tmp, b);
    }
    return k->dot_f32(v->f + (size_t)a * (size_t)v->dim, v->f + (size_t)b * (size_t)v->dim,
                      v->dim);
}

/* Alg. 4: from candidates (ids, scores to the base node; best first) keep
 * up to M that are each closer to the base than to any kept one. */
static int32_t select_heuristic(const me_vecs *v, const me_vec_kern *k, const int64_t *ids,
                                const float *sc, int32_t n, int32_t M, int32_t *out, float *tmp,
                                int64_t *nd)
{
    int32_t r = 0;
    for (int32_t i = 0; i < n && r < M; i++) {
        int good = 1;
        for (int32_t j = 0; j < r; j++) {
            ++*nd;
            if (pair_score(v, k, ids[i], out[j], tmp) > sc[i]) {
                good = 0;
                break;
            }
        }
        if (good)
            out[r++] = (int32_t)ids[i];
    }
    return r;
}

/* Sorts candidates by score desc, id asc: the heuristic's order, and one
 * that does not depend on the order they were found in. */
static void sort_cands(int64_t *ids, float *sc, int32_t n)
{
    for (int32_t i = 1; i < n; i++) {
        float s = sc[i];
        int64_t d = ids[i];
        int32_t j = i - 1;
        while (j >= 0 && (sc[j] < s || (sc[j] == s && ids[j] > d))) {
            sc[j + 1] = sc[j];
            ids[j + 1] = ids[j];
            j--;
        }
        sc[j + 1] = s;
        ids[j + 1] = d;
    }
}

/* Adds link from -> to on layer l, shrinking from's list with the heuristic
 * when it is full. The caller owns from's lists. */
static void add_link(me_hnsw *g, const me_vecs *v, const me_vec_kern *k, int64_t from, int64_t to,
                     int32_t l, worker *w)
{
    int32_t *L = links(g, from, l);
    int32_t M = max_links(g, l);
    for (int32_t j = 1; j <= L[0]; j++)
        if (L[j] == to)
            return;
    if (L[0] < M) {
        L[1 + L[0]] = (int32_t)to;
        L[0]++;
        return;
    }
    int32_t n = L[0] + 1;
    int64_t ids[2 * HNSW_MAX_M + 1];
    float sc[2 * HNSW_MAX_M + 1];
    int32_t keep[2 * HNSW_MAX_M + 1];
    me_vecs_row(v, from, w->tmp2);
    for (int32_t j = 0; j < n; j++) {
        ids[j] = j < L[0] ? L[1 + j] : to;
        sc[j] = me_vecs_score(v, k, w->tmp2, ids[j]);
    }
    w->nd += n;
    sort_cands(ids, sc, n);
    int32_t r = select_heuristic(v, k, ids, sc, n, M, keep, w->tmp, &w->nd);
    memcpy(L + 1, keep, sizeof *keep * (size_t)r);
    L[0] = r;
}

/* Gives node its level and empty link lists (sequential: it draws from the
 * graph's RNG, so levels do not depend on the thread count). */
static int prepare_node(me_hnsw *g, int64_t node, me_err *e)
{
    int32_t lvl = random_level(g);
    g->level[node] = (uint8_t)lvl;
    links(g, node, 0)[0] = 0;
    g->up[node] = NULL;
    if (lvl > 0) {
        g->up[node] = calloc((size_t)lvl * (size_t)(1 + g->m), sizeof(int32_t));
        RETURN_ERROR_IF(!g->up[node], e, MEDEMBED_ERR_NOMEM, "out of memory for HNSW links");
    }
    return MEDEMBED_OK;
}

/* A reverse link of a batch: `to` (a new node) links to `from`'s list. */
typedef struct rlink {
    int32_t from, to, l;
} rlink;

static int rlink_cmp(const void *a, const void *b)
{
    const rlink *x = a, *y = b;
    if (x->from != y->from)
        return x->from < y->from ? -1 : 1;
    if (x->l != y->l)
        return x->l < y->l ? -1 : 1;
    return (x->to > y->to) - (x->to < y->to);
}

typedef struct batch_job {
    me_hnsw *g;
    const me_vecs *v;
    const me_vec_kern *k;
    int64_t b0, b1;   /* the batch: nodes [b0, b1) */
    int64_t entry;    /* the graph before the batch */
    int32_t top;
    worker *w;        /* (threads) */
    rlink *rl;        /* phase 2: reverse links sorted by from (cap_rl) */
    int64_t *grp;     /* (n_grp + 1) starts of each from's run in rl */
    int64_t n_grp, cap_rl;
    atomic_int failed;
} batch_job;

/* Phase 1 for one new node: search the graph before the batch, add the
 * batch's other nodes as candidates, and select the node's own links. */
static int link_out(batch_job *j, int64_t node, worker *w)
{
    me_hnsw *g = j->g;
    const me_vecs *v = j->v;
    const me_vec_kern *k = j->k;
    int32_t lvl = g->level[node];
    me_vecs_row(v, node, w->q);
    int32_t n_eps = 0;
    if (j->entry >= 0)
        w->eps[n_eps++] = greedy(g, v, k, w->q, j->entry, j->top, lvl, &w->nd);
    for (int32_t l = lvl; l >= 0; l--) {
        int32_t n = 0;
        if (n_eps > 0 && l <= j->top) {
            w->W.n = 0;
            vis_reset(w->vis);
            int rc = search_layer(g, v, k, w->q, w->eps, n_eps, l, NULL, NULL, &w->W, w->vis,
                                  &w->C, &w->nd);
            if (rc != MEDEMBED_OK)
                return rc;
            /* Alg. 1: the next layer down starts from all of W */
            for (int32_t i = 0; i < w->W.n; i++) {
                w->ids[n] = w->eps[i] = w->W.id[i];
                w->sc[n] = w->W.score[i];
                n++;
            }
            n_eps = w->W.n;
        }
        for (int64_t b = j->b0; b < j->b1; b++) {
            if (b == node || g->level[b] < l)
                continue;
            w->ids[n] = b;
            w->sc[n] = me_vecs_score(v, k, w->q, b);
            w->nd++;
            n++;
        }
        sort_cands(w->ids, w->sc, n);
        int32_t r = select_heuristic(v, k, w->ids, w->sc, n, g->m, w->sel, w->tmp, &w->nd);
        int32_t *L = links(g, node, l);
        memcpy(L + 1, w->sel, sizeof *w->sel * (size_t)r);
        L[0] = r;
    }
    return MEDEMBED_OK;
}

static void phase1_task(void *arg, int64_t task, int32_t thread)
{
    batch_job *j = arg;
    if (atomic_load_explicit(&j->failed, memory_order_relaxed))
        return;
    if (link_out(j, j->b0 + task, &j->w[thread]) != MEDEMBED_OK)
        atomic_store(&j->failed, 1);
}

/* Phase 2 for one receiving node: its new links, in (layer, node) order. */
static void phase2_task(void *arg, int64_t task, int32_t thread)
{
    batch_job *j = arg;
    for (int64_t i = j->grp[task]; i < j->grp[task + 1]; i++)
        add_link(j->g, j->v, j->k, j->rl[i].from, j->rl[i].to, j->rl[i].l, &j->w[thread]);
}

static void run_tasks(me_pool *pool, int32_t nt, int64_t n, me_task_fn fn, void *arg)
{
    if (nt > 1 && n > 1) {
        me_pool_run(pool, n, fn, arg);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        fn(arg, i, 0);
}

/* Inserts nodes [b0, b1), whose levels are drawn. */
static int insert_batch(batch_job *j, me_pool *pool, int32_t nt)
{
    me_hnsw *g = j->g;
    j->entry = g->entry;
    j->top = g->max_level;
    int64_t need = 0;
    for (int64_t b = j->b0; b < j->b1; b++)
        need += g->m0 + (int64_t)g->level[b] * g->m;
    if (need > j->cap_rl) {
        free(j->rl);
        free(j->grp);
        j->rl = malloc(sizeof *j->rl * (size_t)need);
        j->grp = malloc(sizeof *j->grp * (size_t)(need + 1));
        j->cap_rl = j->rl && j->grp ? need : 0;
        if (!j->cap_rl)
            return MEDEMBED_ERR_NOMEM;
    }
    run_tasks(pool, nt, j->b1 - j->b0, phase1_task, j);
    if (atomic_load(&j->failed))
        return MEDEMBED_ERR_NOMEM;
    int64_t n = 0;
    for (int64_t b = j->b0; b < j->b1; b++)
        for (int32_t l = 0; l <= g->level[b]; l++) {
            const int32_t *L = links(g, b, l);
            for (int32_t i = 1; i <= L[0]; i++)
                j->rl[n++] = (rlink){L[i], (int32_t)b, l};
        }
    qsort(j->rl, (size_t)n, sizeof *j->rl, rlink_cmp);
    j->n_grp = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || j->rl[i].from != j->rl[i - 1].from)
            j->grp[j->n_grp++] = i;
    j->grp[j->n_grp] = n;
    run_tasks(pool, nt, j->n_grp, phase2_task, j);
    for (int64_t b = j->b0; b < j->b1; b++)
        if (g->entry < 0 || g->level[b] > g->max_level) {
            g->entry = b;
            g->max_level = g->level[b];
        }
    g->n = j->b1;
    return MEDEMBED_OK;
}

static void workers_free(me_hnsw *g, worker *w, int32_t nt)
{
    for (int32_t t = 0; w && t < nt; t++) {
        free(w[t].q);
        me_topk_free(&w[t].W);
        ch_free(&w[t].C);
        vis_put(g, w[t].vis);
        free(w[t].ids);
        free(w[t].eps);
        free(w[t].sc);
        free(w[t].sel);
        atomic_fetch_add(&g->n_dist_build, w[t].nd);
    }
    free(w);
}

int me_hnsw_add(me_hnsw *g, const me_vecs *v, int64_t upto, me_pool *pool, me_err *e)
{
    RETURN_ERROR_IF(upto > v->n || upto > HNSW_MAX_NODES, e, MEDEMBED_ERR_ARG,
                    "HNSW: %lld nodes is over the limit", (long long)upto);
    if (upto <= g->n)
        return MEDEMBED_OK;
    RETURN_ERROR_IF(reserve(g, upto) != MEDEMBED_OK, e, MEDEMBED_ERR_NOMEM,
                    "out of memory for an HNSW graph of %lld nodes", (long long)upto);
    int64_t first = g->n;
    for (int64_t i = first; i < upto; i++) {
        int rc = prepare_node(g, i, e);
        if (rc != MEDEMBED_OK) {
            for (int64_t j = first; j < i; j++) {
                free(g->up[j]);
                g->up[j] = NULL;
            }
            return rc;
        }
    }
    int32_t nt = pool ? me_pool_threads(pool) : 1;
    if (nt < 1)
        nt = 1;
    size_t d = (size_t)v->dim;
    int32_t ncand = g->efc + HNSW_MAX_BATCH;
    batch_job j = {.g = g, .v = v, .k = me_vec_kern_get()};
    atomic_init(&j.failed, 0);
    j.w = calloc((size_t)nt, sizeof *j.w);
    int ok = j.w != NULL;
    for (int32_t t = 0; ok && t < nt; t++) {
        worker *w = &j.w[t];
        w->q = malloc(sizeof *w->q * d * 3);
        w->vis = vis_get(g, upto);
        w->ids = malloc(sizeof *w->ids * (size_t)ncand);
        w->eps = malloc(sizeof *w->eps * (size_t)g->efc);
        w->sc = malloc(sizeof *w->sc * (size_t)ncand);
        w->sel = malloc(sizeof *w->sel * (size_t)(g->m0 + 1));
        ok = w->q && w->vis && w->ids && w->eps && w->sc && w->sel &&
             me_topk_init(&w->W, g->efc) == MEDEMBED_OK;
        if (w->q) {
            w->tmp = w->q + d;
            w->tmp2 = w->q + 2 * d;
        }
    }
    int rc = ok ? MEDEMBED_OK : MEDEMBED_ERR_NOMEM;
    for (int64_t b0 = first; b0 < upto && rc == MEDEMBED_OK;) {
        int64_t B = g->n / HNSW_BATCH_DIV;
        if (B < 1)
            B = 1;
        if (B > HNSW_MAX_BATCH)
            B = HNSW_MAX_BATCH;
        if (B > upto - b0)
            B = upto - b0;
        j.b0 = b0;
        j.b1 = b0 + B;
        rc = insert_batch(&j, pool, nt);
        b0 = j.b1;
    }
    workers_free(g, j.w, nt);
    free(j.rl);
    free(j.grp);
    if (rc != MEDEMBED_OK) {
        /* Nodes not inserted are dropped; the caller rebuilds. */
        for (int64_t i = g->n; i < upto; i++) {
            free(g->up[i]);
            g->up[i] = NULL;
        }
        return me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory building the HNSW graph");
    }
    g->n_built += upto - first;
    return MEDEMBED_OK;
}

int me_hnsw_search(const me_hnsw *g, const me_vecs *v, const float *q, int32_t ef,
                   me_hnsw_accept_fn accept, void *arg, me_topk *out, me_err *e)
{
    out->n = 0;
    if (g->n == 0)
        return MEDEMBED_OK;
    const me_vec_kern *k = me_vec_kern_get();
    int64_t nd = 0;
    int64_t ep = greedy(g, v, k, q, g->entry, g->max_level, 0, &nd);
    me_topk W;
    if (ef < out->k)
        ef = out->k;
    RETURN_ERROR_IF(me_topk_init(&W, ef) != MEDEMBED_OK, e, MEDEMBED_ERR_NOMEM, "out of memory");
    visited *vis = vis_get(g, g->n);
    cand_heap C = {0};
    int rc = vis ? search_layer(g, v, k, q, &ep, 1, 0, accept, arg, &W, vis, &C, &nd)
                 : MEDEMBED_ERR_NOMEM;
    ch_free(&C);
    vis_put(g, vis);
    me_hnsw *gm = (me_hnsw *)g; /* the counters are the only mutable part */
    atomic_fetch_add_explicit(&gm->n_dist_search, nd, memory_order_relaxed);
    atomic_fetch_add_explicit(&gm->n_search, 1, memory_order_relaxed);
    if (rc == MEDEMBED_OK)
        for (int32_t i = 0; i < W.n; i++)
            me_topk_push(out, W.score[i], W.id[i]);
    me_topk_free(&W);
    RETURN_ERROR_IF(rc != MEDEMBED_OK, e, rc, "out of memory during HNSW search");
    return MEDEMBED_OK;
}

/* ------------------------------------------------------- serialization */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} wbuf;

static void wb_put(wbuf *w, const void *src, size_t n)
{
    if (w->oom || n == 0) /* n == 0: src may be NULL (an empty graph) */
        return;
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->n + n)
            cap *= 2;
        uint8_t *p = realloc(w->p, cap);
        if (!p) {
            w->oom = 1;
            return;
        }
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->n, src, n);
    w->n += n;
}

static void wb_u16(wbuf *w, uint16_t x)
{
    uint8_t b[2] = {(uint8_t)x, (uint8_t)(x >> 8)};
    wb_put(w, b, 2);
}
static void wb_u32(wbuf *w, uint32_t x)
{
    uint8_t b[4] = {(uint8_t)x, (uint8_t)(x >> 8), (uint8_t)(x >> 16), (uint8_t)(x >> 24)};
    wb_put(w, b, 4);
}
static void wb_u64(wbuf *w, uint64_t x)
{
    wb_u32(w, (uint32_t)x);
    wb_u32(w, (uint32_t)(x >> 32));
}

/* Layout: magic[8] u32 m, u32 ef_construction, u64 n, u64 entry+1,
 * u32 max_level, u64 rng; n x u8 level; then per node, per layer 0..level:
 * u16 count, count x u32 link. */
int me_hnsw_save(const me_hnsw *g, uint8_t **buf, size_t *len, me_err *e)
{
    wbuf w = {0};
    wb_put(&w, HNSW_MAGIC, 8);
    wb_u32(&w, (uint32_t)g->m);
    wb_u32(&w, (uint32_t)g->efc);
    wb_u64(&w, (uint64_t)g->n);
    wb_u64(&w, (uint64_t)(g->entry + 1));
    wb_u32(&w, (uint32_t)g->max_level);
    wb_u64(&w, g->rng);
    wb_put(&w, g->level, (size_t)g->n);
    for (int64_t i = 0; i < g->n; i++)
        for (int32_t l = 0; l <= g->level[i]; l++) {
            const int32_t *L = links(g, i, l);
            wb_u16(&w, (uint16_t)L[0]);
            for (int32_t j = 1; j <= L[0]; j++)
                wb_u32(&w, (uint32_t)L[j]);
        }
    if (w.oom) {
        free(w.p);
        return me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory serializing the HNSW graph");
    }
    *buf = w.p;
    *len = w.n;
    return MEDEMBED_OK;
}

typedef struct rbuf {
    const uint8_t *p;
    size_t n, off;
} rbuf;

static int rb_get(rbuf *r, void *dst, size_t n)
{
    if (n > r->n - r->off)
        return -1;
    memcpy(dst, r->p + r->off, n);
    r->off += n;
    return 0;
}
static int rb_u16(rbuf *r, uint16_t *x)
{
    uint8_t b[2];
    if (rb_get(r, b, 2))
        return -1;
    *x = (uint16_t)(b[0] | b[1] << 8);
    return 0;
}
static int rb_u32(rbuf *r, uint32_t *x)
{
    uint8_t b[4];
    if (rb_get(r, b, 4))
        return -1;
    *x = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}
static int rb_u64(rbuf *r, uint64_t *x)
{
    uint32_t lo, hi;
    if (rb_u32(r, &lo) || rb_u32(r, &hi))
        return -1;
    *x = (uint64_t)hi << 32 | lo;
    return 0;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        rc = me_err_set(e, MEDEMBED_ERR_FORMAT, "HNSW graph: " __VA_ARGS__);                       \
        goto fail;                                                                                 \
    } while (0)

int me_hnsw_load(const uint8_t *buf, size_t len, int64_t n_expected, me_hnsw **out, me_err *e)
{
    rbuf r = {buf, len, 0};
    char magic[8];
    uint32_t m, efc, max_level;
    uint64_t n, entry1, rng;
    int rc = MEDEMBED_OK;
    me_hnsw *g = NULL;
    if (!buf || rb_get(&r, magic, 8) || memcmp(magic, HNSW_MAGIC, 8) != 0)
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "HNSW graph: bad magic (not a graph blob)");
    if (rb_u32(&r, &m) || rb_u32(&r, &efc) || rb_u64(&r, &n) || rb_u64(&r, &entry1) ||
        rb_u32(&r, &max_level) || rb_u64(&r, &rng))
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "HNSW graph: truncated header (%zu bytes)",
                          len);
    if (m < 2 || m > HNSW_MAX_M)
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "HNSW graph: M = %u, allowed 2..%d", m,
                          HNSW_MAX_M);
    if (efc < 1 || efc > 100000)
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "HNSW graph: ef_construction = %u", efc);
    if ((int64_t)n != n_expected || n > (uint64_t)HNSW_MAX_NODES)
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "HNSW graph: %llu nodes, the index has %lld",
                          (unsigned long long)n, (long long)n_expected);
    if (n > len) /* at least one level byte per node */
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "HNSW graph: truncated (%zu bytes)", len);
    if (max_level > HNSW_MAX_LEVEL || entry1 > n || (n == 0) != (entry1 == 0))
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "HNSW graph: bad entry point %llu / level %u",
                          (unsigned long long)entry1, max_level);
    me_hnsw_params p = {(int32_t)m, (int32_t)efc, rng ? rng : 1};
    FORWARD_IF_ERROR(me_hnsw_create(&p, &g) == MEDEMBED_OK
                         ? MEDEMBED_OK
                         : me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory"));
    g->rng = rng;
    if (n && reserve(g, (int64_t)n) != MEDEMBED_OK) {
        rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory for %llu HNSW nodes",
                        (unsigned long long)n);
        goto fail;
    }
    if (n) {
        memset(g->up, 0, sizeof *g->up * (size_t)n);
        if (rb_get(&r, g->level, (size_t)n))
            BAD("truncated level table");
    }
    uint32_t top = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (g->level[i] > HNSW_MAX_LEVEL)
            BAD("node %llu has level %u, allowed 0..%d", (unsigned long long)i, g->level[i],
                HNSW_MAX_LEVEL);
        if (g->level[i] > top)
            top = g->level[i];
    }
    if (n && (top != max_level || g->level[entry1 - 1] != max_level))
        BAD("entry point %llu is not on the top level %u", (unsigned long long)(entry1 - 1),
            max_level);
    g->n = (int64_t)n;
    g->entry = (int64_t)entry1 - 1;
    g->max_level = (int32_t)max_level;
    for (uint64_t i = 0; i < n; i++) {
        int32_t lv = g->level[i];
        g->l0[(size_t)i * (size_t)(1 + g->m0)] = 0;
        if (lv > 0) {
            g->up[i] = calloc((size_t)lv * (size_t)(1 + g->m), sizeof(int32_t));
            if (!g->up[i]) {
                rc = me_err_set(e, MEDEMBED_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
        for (int32_t l = 0; l <= lv; l++) {
            uint16_t cnt;
            if (rb_u16(&r, &cnt))
                BAD("truncated at node %llu", (unsigned long long)i);
            if (cnt > max_links(g, l))
                BAD("node %llu layer %d has %u links, allowed %d", (unsigned long long)i, l, cnt,
                    max_links(g, l));
            int32_t *L = links(g, (int64_t)i, l);
            L[0] = 0;
            for (uint16_t j = 0; j < cnt; j++) {
                uint32_t t;
                if (rb_u32(&r, &t))
                    BAD("truncated at node %llu", (unsigned long long)i);
                if (t >= n || t == i || g->level[t] < l)
                    BAD("node %llu layer %d links to %u, which is not a valid node there",
                        (unsigned long long)i, l, t);
                for (int32_t q = 1; q <= L[0]; q++)
                    if ((uint32_t)L[q] == t)
                        BAD("node %llu layer %d links to %u twice", (unsigned long long)i, l, t);
                L[1 + L[0]] = (int32_t)t;
                L[0]++;
            }
        }
    }
    if (r.off != len)
        BAD("%zu trailing bytes", len - r.off);
    *out = g;
    return MEDEMBED_OK;
fail:
    if (g) {
        /* g->n may be short of the allocated up[]: free what was set. */
        g->n = g->cap ? (int64_t)n : 0;
        me_hnsw_free(g);
    }
    return rc;
}
