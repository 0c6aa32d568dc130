/*
 * corpus.c - JSONL document records (BEIR layout), .npy matrices, qrels
 * TSV files and a small string hash map. Every rejection names the file,
 * the line and the reason.
 */
#include "corpus.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "npy.h"

/* ------------------------------------------------------------ strmap */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

int64_t *strmap_get(const strmap *m, const char *key)
{
    if (!m->cap)
        return NULL;
    size_t i = (size_t)hash_str(key) & (m->cap - 1);
    while (m->keys[i]) {
        if (strcmp(m->keys[i], key) == 0)
            return &m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

static int strmap_grow(strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    char **keys = calloc(cap, sizeof *keys);
    int64_t *vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = (size_t)hash_str(m->keys[i]) & (cap - 1);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int strmap_put(strmap *m, const char *key, int64_t val, int64_t *old)
{
    int64_t *p = strmap_get(m, key);
    if (p) {
        if (old)
            *old = *p;
        return 0;
    }
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m) != 0)
        return -1;
    size_t i = (size_t)hash_str(key) & (m->cap - 1);
    while (m->keys[i])
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = strdup(key);
    if (!m->keys[i])
        return -1;
    m->vals[i] = val;
    m->n++;
    return 1;
}

void strmap_free(strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ corpus */

int corpus_open(corpus_reader *r, const char *path, const char *text_field, int skip_bad)
{
    memset(r, 0, sizeof *r);
    r->text_field = text_field;
    r->skip_bad = skip_bad;
    if (!path || strcmp(path, "-") == 0) {
        r->f = stdin;
        r->name = "<stdin>";
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        cli_error("%s: is a directory, not a JSONL file", path);
        return 1;
    }
    r->f = fopen(path, "rb");
    if (!r->f) {
        cli_error("%s: cannot open: %s", path, strerror(errno));
        return 1;
    }
    r->name = path;
    return 0;
}

void corpus_doc_free(corpus_doc *d)
{
    free(d->id);
    free(d->text);
    free(d->metadata);
    memset(d, 0, sizeof *d);
}

void corpus_close(corpus_reader *r)
{
    if (r->f && r->f != stdin)
        fclose(r->f);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* Parses one line into d; on failure writes the reason into why. */
static int parse_record(corpus_reader *r, const char *line, size_t len, corpus_doc *d, char *why,
                        size_t why_len)
{
    json_error_t je;
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        snprintf(why, why_len, "invalid JSON at column %d: %s", je.column, je.text);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(j)) {
        snprintf(why, why_len, "not a JSON object");
        goto out;
    }
    const char *idkey = json_object_get(j, "_id") ? "_id" : "id";
    json_t *id = json_object_get(j, idkey);
    char num[32];
    const char *ids = NULL;
    if (json_is_string(id)) {
        ids = json_string_value(id);
        if (strlen(ids) != json_string_length(id)) {
            snprintf(why, why_len, "\"%s\" holds a NUL character", idkey);
            goto out;
        }
    } else if (json_is_integer(id)) {
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(id));
        ids = num;
    } else {
        snprintf(why, why_len, id ? "\"%s\" must be a string or an integer"
                                  : "no \"_id\" or \"id\" field",
                 idkey);
        goto out;
    }
    if (!*ids || strlen(ids) > 1024) {
        snprintf(why, why_len, "id must be 1..1024 bytes");
        goto out;
    }
    const char *tf = r->text_field ? r->text_field : "text";
    json_t *t = json_object_get(j, tf);
    if (!json_is_string(t)) {
        snprintf(why, why_len, t ? "field \"%s\" is not a string" : "no \"%s\" field%s", tf,
                 r->text_field ? "" : " (set --text-field for other layouts)");
        goto out;
    }
    json_t *title = r->text_field ? NULL : json_object_get(j, "title");
    if (title && !json_is_string(title) && !json_is_null(title)) {
        snprintf(why, why_len, "field \"title\" is not a string");
        goto out;
    }
    size_t tl = json_is_string(title) ? json_string_length(title) : 0;
    size_t xl = json_string_length(t);
    d->text = malloc(tl + 1 + xl + 1);
    d->id = strdup(ids);
    if (!d->text || !d->id) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    /* BEIR / MTEB: (title + " " + text).strip(); an empty title adds only a
     * space, which the tokenizer drops anyway. */
    size_t o = 0;
    if (tl) {
        memcpy(d->text, json_string_value(title), tl);
        d->text[tl] = ' ';
        o = tl + 1;
    }
    memcpy(d->text + o, json_string_value(t), xl);
    d->len = o + xl;
    d->text[d->len] = 0;
    json_object_del(j, "_id");
    json_object_del(j, "id");
    json_object_del(j, tf);
    if (!r->text_field)
        json_object_del(j, "title");
    if (json_object_size(j) > 0)
        d->metadata = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    rc = 0;
out:
    json_decref(j);
    if (rc != 0) {
        free(d->id);
        free(d->text);
        d->id = d->text = NULL;
    }
    return rc;
}

int corpus_next(corpus_reader *r, corpus_doc *d)
{
    memset(d, 0, sizeof *d);
    for (;;) {
        errno = 0;
        ssize_t n = getline(&r->buf, &r->cap, r->f);
        if (n < 0) {
            if (ferror(r->f)) {
                cli_error("%s: read error after line %ld: %s", r->name, r->line,
                          strerror(errno ? errno : EIO));
                return -1;
            }
            return 0;
        }
        r->line++;
        size_t len = (size_t)n;
        while (len && (r->buf[len - 1] == '\n' || r->buf[len - 1] == '\r'))
            len--;
        size_t k = 0;
        while (k < len && (r->buf[k] == ' ' || r->buf[k] == '\t'))
            k++;
        if (k == len)
            continue;
        char why[300];
        if (parse_record(r, r->buf, len, d, why, sizeof why) == 0) {
            d->line = r->line;
            return 1;
        }
        if (!r->skip_bad) {
            cli_error("%s: line %ld: %s (--skip-bad skips such lines)", r->name, r->line, why);
            return -1;
        }
        cli_warn("%s: line %ld: %s; skipped", r->name, r->line, why);
        r->n_bad++;
    }
}

/* --------------------------------------------------------------- npy */

int npy_read(const char *path, npy_matrix *m)
{
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("%s: cannot open: %s", path, strerror(errno));
        return 1;
    }
    int rc = 1;
    struct stat sb;
    size_t cap = 12 + ((size_t)1 << 16), got = 0;
    uint8_t *pre = malloc(cap);
    npy_info in;
    char why[300];
    if (!pre || fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        cli_error("%s: not a regular file", path);
        goto out;
    }
    got = fread(pre, 1, cap, f);
    if (npy_parse(pre, got, (uint64_t)sb.st_size, &in, why, sizeof why)) {
        cli_error("%s: %s", path, why);
        goto out;
    }
    size_t cnt = (size_t)in.rows * (size_t)in.cols;
    m->data = malloc(sizeof *m->data * (cnt ? cnt : 1));
    if (!m->data) {
        cli_error("%s: out of memory for %lld x %d floats", path, (long long)in.rows, in.cols);
        goto out;
    }
    if (fseek(f, (long)in.data_offset, SEEK_SET) != 0 ||
        fread(m->data, sizeof *m->data, cnt, f) != cnt) {
        cli_error("%s: truncated: expected %lld x %d floats", path, (long long)in.rows, in.cols);
        free(m->data);
        m->data = NULL;
        goto out;
    }
    m->rows = in.rows;
    m->cols = in.cols;
    rc = 0;
out:
    free(pre);
    fclose(f);
    return rc;
}

void npy_free(npy_matrix *m)
{
    free(m->data);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------- qrels */

static int qrels_add(qrels *q, const char *qid, const char *doc, int32_t rel)
{
    int64_t *pi = strmap_get(&q->by_query, qid);
    int64_t i;
    if (pi) {
        i = *pi;
    } else {
        if (q->n_q == q->cap_q) {
            int64_t cap = q->cap_q ? q->cap_q * 2 : 256;
            struct qrels_query *p = realloc(q->q, sizeof *p * (size_t)cap);
            if (!p)
                return -1;
            q->q = p;
            q->cap_q = cap;
        }
        i = q->n_q;
        memset(&q->q[i], 0, sizeof q->q[i]);
        q->q[i].qid = strdup(qid);
        if (!q->q[i].qid || strmap_put(&q->by_query, qid, i, NULL) < 0)
            return -1;
        q->n_q++;
    }
    struct qrels_query *e = &q->q[i];
    for (int32_t k = 0; k < e->n; k++)
        if (strcmp(e->doc[k], doc) == 0) {
            e->rel[k] = rel; /* a repeated pair: the last grade wins, as in a dict */
            return 0;
        }
    if (e->n == e->cap) {
        int32_t cap = e->cap ? e->cap * 2 : 4;
        char **d = realloc(e->doc, sizeof *d * (size_t)cap);
        if (!d)
            return -1;
        e->doc = d;
        int32_t *r = realloc(e->rel, sizeof *r * (size_t)cap);
        if (!r)
            return -1;
        e->rel = r;
        e->cap = cap;
    }
    e->doc[e->n] = strdup(doc);
    if (!e->doc[e->n])
        return -1;
    e->rel[e->n++] = rel;
    return 0;
}

int qrels_load(const char *path, qrels *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("%s: cannot open the qrels file: %s", path, strerror(errno));
        return 1;
    }
    char *buf = NULL;
    size_t cap = 0;
    long line = 0;
    int rc = 0;
    ssize_t n;
    while ((n = getline(&buf, &cap, f)) >= 0) {
        line++;
        size_t len = (size_t)n;
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            len--;
        buf[len] = 0;
        if (len == 0)
            continue;
        char *f1 = buf, *f2 = strchr(f1, '\t');
        char *f3 = f2 ? strchr(f2 + 1, '\t') : NULL;
        if (!f2 || !f3) {
            cli_error("%s: line %ld: expected query-id<TAB>corpus-id<TAB>score", path, line);
            rc = 1;
            break;
        }
        *f2++ = 0;
        *f3++ = 0;
        char *end = NULL;
        errno = 0;
        long v = strtol(f3, &end, 10);
        if (end == f3 || *end || errno || v < -1000000 || v > 1000000) {
            if (line == 1)
                continue; /* the header: query-id corpus-id score */
            cli_error("%s: line %ld: score \"%s\" is not an integer", path, line, f3);
            rc = 1;
            break;
        }
        if (!*f1 || !*f2) {
            cli_error("%s: line %ld: empty query or corpus id", path, line);
            rc = 1;
            break;
        }
        if (qrels_add(out, f1, f2, (int32_t)v) != 0) {
            cli_error("%s: out of memory", path);
            rc = 1;
            break;
        }
    }
    if (!rc && ferror(f)) {
        cli_error("%s: read error", path);
        rc = 1;
    }
    free(buf);
    fclose(f);
    if (!rc && out->n_q == 0) {
        cli_error("%s: no judgments in the qrels file", path);
        rc = 1;
    }
    if (rc)
        qrels_free(out);
    return rc;
}

void qrels_free(qrels *q)
{
    for (int64_t i = 0; i < q->n_q; i++) {
        for (int32_t k = 0; k < q->q[i].n; k++)
            free(q->q[i].doc[k]);
        free(q->q[i].doc);
        free(q->q[i].rel);
        free(q->q[i].qid);
    }
    free(q->q);
    strmap_free(&q->by_query);
    memset(q, 0, sizeof *q);
}
