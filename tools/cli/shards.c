/*
 * shards.c - sharded .npy output with a manifest (see shards.h).
 */
#include "shards.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"

#define FORMAT "medembed-shards/1"

static char *path_of(const cli_shards *s, int64_t i, const char *suffix)
{
    size_t n = strlen(s->base) + strlen(suffix) + 32;
    char *p = malloc(n);
    if (p) {
        if (i >= 0)
            snprintf(p, n, "%s-%05lld%s", s->base, (long long)i, suffix);
        else
            snprintf(p, n, "%s%s", s->base, suffix);
    }
    return p;
}

static const char *base_name(const char *p)
{
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

static int write_manifest(cli_shards *s, int complete)
{
    char *path = path_of(s, -1, ".manifest.json"), *tmp = path_of(s, -1, ".manifest.json.part");
    json_t *o = json_pack("{s:s, s:i, s:I, s:I, s:b, s:O}", "format", FORMAT, "dim", (int)s->dim,
                          "shard_size", (json_int_t)s->size, "rows", (json_int_t)s->rows,
                          "complete", complete, "shards", (json_t *)s->list);
    int rc = !path || !tmp || !o || json_dump_file(o, tmp, JSON_INDENT(1) | JSON_PRESERVE_ORDER) ||
             rename(tmp, path) != 0;
    if (rc)
        cli_error("%s: cannot write the manifest: %s", path ? path : s->label, strerror(errno));
    json_decref(o);
    free(path);
    free(tmp);
    return rc ? -1 : 0;
}

/* Rows of a committed shard file, or -1 when it is missing or damaged. */
static int64_t shard_rows(const char *path, int32_t dim)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint8_t head[4096];
    size_t got = fread(head, 1, sizeof head, f);
    struct stat st;
    int ok = fstat(fileno(f), &st) == 0;
    fclose(f);
    npy_info ni;
    char why[128];
    if (!ok || npy_parse(head, got, (uint64_t)st.st_size, &ni, why, sizeof why) != 0 ||
        ni.cols != dim)
        return -1;
    return ni.rows;
}

/* Reads the manifest of an earlier run and checks its shards. */
static int resume_manifest(cli_shards *s, int *complete)
{
    char *path = path_of(s, -1, ".manifest.json");
    if (!path)
        return 1;
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    int rc = 0;
    if (!o) {
        if (access(path, F_OK) == 0) {
            cli_error("%s: not a readable manifest: %s", path, je.text);
            rc = 2;
        }
        free(path);
        return rc; /* no manifest: a fresh start */
    }
    json_t *list = json_object_get(o, "shards");
    const char *fmt = json_string_value(json_object_get(o, "format"));
    if (!fmt || strcmp(fmt, FORMAT) != 0 || !json_is_array(list)) {
        cli_error("%s: not a medembed shard manifest", path);
        rc = 2;
    } else if (json_integer_value(json_object_get(o, "dim")) != s->dim ||
               json_integer_value(json_object_get(o, "shard_size")) != s->size) {
        cli_error("%s: written with dim %lld and --shard-size %lld; this run has dim %d and "
                  "--shard-size %ld",
                  path, (long long)json_integer_value(json_object_get(o, "dim")),
                  (long long)json_integer_value(json_object_get(o, "shard_size")), s->dim,
                  s->size);
        rc = 2;
    }
    size_t i;
    json_t *e;
    json_array_foreach(rc ? NULL : list, i, e)
    {
        char *npy = path_of(s, (int64_t)i, ".npy");
        json_int_t want = json_integer_value(json_object_get(e, "rows"));
        int64_t have = npy ? shard_rows(npy, s->dim) : -1;
        if (have != want || want <= 0) {
            cli_error("%s: shard %zu (%s) is missing or does not hold the %lld rows the "
                      "manifest lists",
                      path, i, npy ? npy : "?", (long long)want);
            rc = 1;
        }
        free(npy);
        if (rc)
            break;
        s->rows += want;
        s->n_shards++;
    }
    if (!rc && s->n_shards > 0) {
        char *ids = path_of(s, s->n_shards - 1, ".ids.json");
        json_t *a = ids ? json_load_file(ids, JSON_DECODE_ANY, &je) : NULL;
        json_t *last = json_array_get(a, json_array_size(a) - 1);
        if (!json_is_array(a) || !last) {
            cli_error("%s: cannot read the ids of the last shard", ids ? ids : path);
            rc = 1;
        } else {
            s->last_id = json_dumps(last, JSON_ENCODE_ANY | JSON_COMPACT);
        }
        json_decref(a);
        free(ids);
    }
    if (!rc) {
        json_decref(s->list);
        s->list = json_incref(list);
        *complete = json_is_true(json_object_get(o, "complete"));
    }
    json_decref(o);
    free(path);
    return rc;
}

int cli_shards_open(cli_shards *s, const char *path, long size, int32_t dim, int resume)
{
    memset(s, 0, sizeof *s);
    size_t n = strlen(path);
    if (n > 4 && strcmp(path + n - 4, ".npy") == 0)
        n -= 4;
    s->base = strndup(path, n);
    s->label = path;
    s->size = size;
    s->dim = dim;
    s->list = json_array();
    if (!s->base || !s->list) {
        cli_error("out of memory");
        return 1;
    }
    int complete = 0;
    if (resume) {
        int rc = resume_manifest(s, &complete);
        if (rc)
            return rc;
    }
    if (complete && s->n_shards > 0) {
        /* a finished run: only an input that also ends here matches it */
        s->complete = 1;
        return 0;
    }
    return write_manifest(s, 0) ? 1 : 0;
}

static int commit(cli_shards *s)
{
    char *npy = path_of(s, s->n_shards, ".npy"), *npy_tmp = path_of(s, s->n_shards, ".npy.part");
    char *ids = path_of(s, s->n_shards, ".ids.json"),
         *ids_tmp = path_of(s, s->n_shards, ".ids.json.part");
    int rc = !npy || !npy_tmp || !ids || !ids_tmp;
    rc |= cli_npy_end(&s->npy) != 0;
    rc |= fclose(s->f) != 0;
    fputs("]\n", s->ids);
    rc |= ferror(s->ids) != 0;
    rc |= fclose(s->ids) != 0;
    s->f = s->ids = NULL;
    if (!rc)
        rc = rename(ids_tmp, ids) != 0 || rename(npy_tmp, npy) != 0;
    if (rc) {
        cli_error("%s: cannot write shard %lld: %s", s->label, (long long)s->n_shards,
                  strerror(errno));
    } else {
        json_array_append_new(s->list, json_pack("{s:s, s:s, s:I}", "file", base_name(npy), "ids",
                                                 base_name(ids), "rows",
                                                 (json_int_t)s->open_rows));
        s->n_shards++;
        s->rows += s->open_rows;
        s->open_rows = 0;
    }
    free(npy);
    free(npy_tmp);
    free(ids);
    free(ids_tmp);
    return rc ? -1 : 0;
}

static int open_shard(cli_shards *s)
{
    char *npy_tmp = path_of(s, s->n_shards, ".npy.part");
    char *ids_tmp = path_of(s, s->n_shards, ".ids.json.part");
    s->f = npy_tmp ? fopen(npy_tmp, "wb") : NULL;
    s->ids = ids_tmp ? fopen(ids_tmp, "wb") : NULL;
    int rc = !s->f || !s->ids || cli_npy_begin(&s->npy, s->f, s->dim) != 0;
    if (rc)
        cli_error("%s: cannot write: %s", npy_tmp ? npy_tmp : s->label, strerror(errno));
    else
        fputc('[', s->ids);
    free(npy_tmp);
    free(ids_tmp);
    return rc ? -1 : 0;
}

int cli_shards_rows(cli_shards *s, const float *rows, const cli_record *recs, int64_t first_index,
                    int32_t n)
{
    if (s->complete) {
        cli_error("%s: the manifest says the run finished after %lld rows, but the input goes "
                  "on: it is not this input's output",
                  s->label, (long long)s->rows);
        return -1;
    }
    int32_t at = 0;
    while (at < n) {
        if (!s->f && open_shard(s) != 0)
            return -1;
        int32_t k = n - at;
        if (k > s->size - s->open_rows)
            k = (int32_t)(s->size - s->open_rows);
        if (cli_npy_rows(&s->npy, rows + (size_t)at * (size_t)s->dim, k) != 0) {
            cli_error("%s: write failed (disk full?)", s->label);
            return -1;
        }
        for (int32_t i = at; i < at + k; i++) {
            if (s->open_rows || i > at)
                fputs(", ", s->ids);
            if (recs[i].id_json)
                fputs(recs[i].id_json, s->ids);
            else
                fprintf(s->ids, "%lld", (long long)(first_index + i));
        }
        s->open_rows += k;
        at += k;
        if (s->open_rows == s->size && (commit(s) != 0 || write_manifest(s, 0) != 0))
            return -1;
    }
    return 0;
}

int cli_shards_close(cli_shards *s)
{
    if (s->complete)
        return 0;
    if (s->f && commit(s) != 0)
        return -1;
    return write_manifest(s, 1);
}

void cli_shards_free(cli_shards *s)
{
    if (s->f) {
        fclose(s->f);
        fclose(s->ids);
    }
    free(s->npy.held);
    json_decref(s->list);
    free(s->last_id);
    free(s->base);
    memset(s, 0, sizeof *s);
}
