/*
 * fuzz_index.c - libFuzzer target for the index file readers.
 *
 * The first byte picks the reader:
 *   even: the rest is an HNSW graph blob for me_hnsw_load (the node count it
 *         must match is taken from the blob's own header, capped); a graph
 *         that loads is then searched, so whatever validation accepts must
 *         be safe to traverse;
 *   odd:  the rest is written to a temporary file and opened as an index
 *         database (medembed_index_open validates settings, documents,
 *         chunk blobs and the graph), then searched and described.
 * Nothing may crash, leak or read out of bounds; errors must be clean.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/index.h"

static void fuzz_graph(const uint8_t *d, size_t n)
{
    int64_t nodes = 0;
    if (n >= 24) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v |= (uint64_t)d[16 + i] << (8 * i);
        nodes = v > 4096 ? 4096 : (int64_t)v;
    }
    me_hnsw *g = NULL;
    me_err e;
    if (me_hnsw_load(d, n, nodes, &g, &e) != MEDEMBED_OK)
        return;
    enum { D = 4 };
    float *x = calloc((size_t)(nodes ? nodes : 1) * D, sizeof *x);
    me_vecs v = {D, MEDEMBED_VEC_F32, nodes, x, NULL, NULL, nodes};
    for (int64_t i = 0; i < nodes * D; i++)
        x[i] = (float)((i * 7919) % 13) - 6.0f;
    float q[D] = {1, -1, 0.5f, 2};
    me_topk t;
    if (me_topk_init(&t, 5) == MEDEMBED_OK) {
        me_hnsw_search(g, &v, q, 16, NULL, NULL, &t, &e);
        me_topk_free(&t);
    }
    /* a loaded graph must serialize back to the same bytes */
    uint8_t *buf = NULL;
    size_t len = 0;
    if (me_hnsw_save(g, &buf, &len, &e) == MEDEMBED_OK) {
        if (len != n || memcmp(buf, d, n) != 0)
            abort();
        free(buf);
    }
    free(x);
    me_hnsw_free(g);
}

static void fuzz_db(const uint8_t *d, size_t n)
{
    char path[64], side[80];
    snprintf(path, sizeof path, "/tmp/fuzz_index_%d.db", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(d, 1, n, f);
    fclose(f);
    medembed_index *ix = NULL;
    char err[256];
    if (medembed_index_open(path, MEDEMBED_INDEX_READONLY, &ix, err, sizeof err) == MEDEMBED_OK) {
        int32_t dim = medembed_index_dim(ix);
        float *q = calloc((size_t)dim, sizeof *q);
        if (q) {
            q[0] = 1;
            const char *filt[] = {"year>=2015"};
            medembed_search_opts so;
            medembed_search_opts_init(&so);
            so.k = 3;
            medembed_hits *h = NULL;
            for (int pass = 0; pass < 3; pass++) {
                so.exact = pass == 1;
                so.filters = pass == 2 ? filt : NULL;
                so.n_filters = pass == 2;
                if (medembed_index_search(ix, q, &so, &h, err, sizeof err) == MEDEMBED_OK) {
                    for (int32_t i = 0; i < medembed_hits_count(h); i++)
                        if (!medembed_hits_id(h, i) || !medembed_hits_metadata(h, i))
                            abort();
                    medembed_hits_free(h);
                }
            }
            free(q);
        }
        free(medembed_index_info_json(ix));
        medembed_index_free(ix);
    }
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    if (data[0] & 1)
        fuzz_db(data + 1, size - 1);
    else
        fuzz_graph(data + 1, size - 1);
    return 0;
}
