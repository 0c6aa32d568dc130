/*
 * identity.c - the model identity (see identity.h for what it covers).
 */
#include "model/identity.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/checksum.h"
#include "model/model.h"
#include "util/file.h"
#include "util/json.h"
#include "util/sha256.h"

static void put_bytes(me_sha256 *h, const void *p, size_t n)
{
    uint64_t len = n;
    me_sha256_update(h, &len, sizeof len); /* lengths keep the fields apart */
    me_sha256_update(h, p, n);
}

static void put_str(me_sha256 *h, const char *s)
{
    put_bytes(h, s ? s : "", s ? strlen(s) : 0);
}

static void put_i64(me_sha256 *h, int64_t v)
{
    me_sha256_update(h, &v, sizeof v);
}

void me_identity_files(medembed_model *m, const char *dir)
{
    static const char *const files[] = {"config.json", "tokenizer.json", "vocab.txt",
                                        "tokenizer_config.json", "special_tokens_map.json",
                                        "added_tokens.json"};
    me_sha256 h;
    me_sha256_init(&h);
    put_str(&h, "medembed model identity 1");
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[4096], *buf = NULL;
        size_t len = 0;
        put_str(&h, files[i]);
        me_path_join(path, sizeof path, dir, files[i]);
        if (me_file_read(path, (size_t)1 << 28, &buf, &len, NULL) == MEDEMBED_OK) {
            put_bytes(&h, buf, len);
            free(buf);
        } else {
            put_i64(&h, -1); /* absent */
        }
    }
    const me_config *c = &m->cfg;
    put_i64(&h, c->pooling);
    put_i64(&h, c->normalize);
    put_i64(&h, c->include_prompt);
    put_i64(&h, c->max_seq_length);
    put_i64(&h, c->do_lower_case);
    char *prompts = json_dumps(c->prompts, JSON_SORT_KEYS | JSON_COMPACT);
    put_str(&h, prompts ? prompts : "{}");
    free(prompts);
    put_str(&h, c->default_prompt_name ? c->default_prompt_name : "\x01none");
    put_i64(&h, m->n_shards);
    for (int32_t i = 0; i < m->n_shards; i++)
        put_bytes(&h, m->shards[i].header, m->shards[i].header_len);
    me_sha256_final(&h, m->files_digest);
}

static pthread_mutex_t g_id_mu = PTHREAD_MUTEX_INITIALIZER;

const char *me_identity(const medembed_model *cm)
{
    medembed_model *m = (medembed_model *)cm; /* the identity is a cache, set once */
    pthread_mutex_lock(&g_id_mu);
    if (!m->identity[0]) {
        me_sha256 h;
        me_sha256_init(&h);
        me_sha256_update(&h, m->files_digest, 32);
        for (int32_t i = 0; i < m->n_shards; i++) {
            /* the tensor data: everything after the 8-byte length and the header */
            const me_map *mp = &m->shards[i].map;
            size_t start = 8 + m->shards[i].header_len;
            size_t n = mp->data && mp->len > start ? mp->len - start : 0;
            const uint8_t *p = n ? (const uint8_t *)mp->data + start : NULL;
            size_t body = n / 64 * 64;
            put_i64(&h, (int64_t)n);
            put_i64(&h, (int64_t)(body ? me_checksum64(p, body) : 0));
            if (n > body)
                me_sha256_update(&h, p + body, n - body);
        }
        uint8_t d[32];
        me_sha256_final(&h, d);
        me_sha256_hex(d, m->identity);
    }
    pthread_mutex_unlock(&g_id_mu);
    return m->identity;
}
