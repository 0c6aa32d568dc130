/*
 * util.c - CLI plumbing: messages, flag parsing, model resolution, input
 * records (text lines / JSONL), JSON string output and the .npy writer.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "hub.h"

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_progress_clear(NULL); /* a message starts on a clean line */
    fputs("medembed: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_progress_clear(NULL);
    fputs("medembed: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_parse_int(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        cli_error("%s expects an integer in [%ld, %ld], got \"%s\"", flag, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_dtype(const char *s)
{
    if (strcmp(s, "f32") == 0 || strcmp(s, "fp32") == 0 || strcmp(s, "float32") == 0)
        return MEDEMBED_DTYPE_F32;
    if (strcmp(s, "bf16") == 0 || strcmp(s, "bfloat16") == 0)
        return MEDEMBED_DTYPE_BF16;
    if (strcmp(s, "int8") == 0)
        return MEDEMBED_DTYPE_INT8;
    cli_error("--dtype expects f32, bf16 or int8, got \"%s\"", s);
    return -1;
}

void cli_common_init(cli_common *c, const char *cmd, void (*usage)(FILE *))
{
    memset(c, 0, sizeof *c);
    c->overlap = -1; /* not given: the library's default */
    c->alpha = -1;
    c->cmd = cmd;
    c->usage = usage;
    c->dtype = MEDEMBED_DTYPE_F32;
    optind = 1;
    opterr = 0;
}

static int int_opt(const char *flag, const char *s, long lo, long hi, long *out)
{
    return cli_parse_int(flag, s, lo, hi, out) ? 2 : 0;
}

int cli_common_opt(cli_common *c, int opt, const char *arg, char **argv)
{
    switch (opt) {
    case CLI_OPT_MODEL:
        c->model = arg;
        return 0;
    case CLI_OPT_INPUT:
        c->input = arg;
        return 0;
    case CLI_OPT_TEXT_FIELD:
        c->text_field = arg;
        return 0;
    case CLI_OPT_INDEX:
        c->index = arg;
        return 0;
    case CLI_OPT_PROMPT:
        c->prompt = arg;
        return 0;
    case CLI_OPT_PROMPT_NAME:
        c->prompt_name = arg;
        return 0;
    case CLI_OPT_SKIP_BAD:
        c->skip_bad = 1;
        return 0;
    case CLI_OPT_K:
        return int_opt("-k", arg, 1, 10000, &c->k);
    case CLI_OPT_BATCH_SIZE:
        return int_opt("--batch-size", arg, 1, 1 << 20, &c->batch);
    case CLI_OPT_THREADS:
        return int_opt("--threads", arg, 1, 256, &c->threads);
    case CLI_OPT_HNSW_M:
        return int_opt("--hnsw-m", arg, 2, 128, &c->hnsw_m);
    case CLI_OPT_CHUNK_TOKENS:
        c->chunk_set = 1;
        return int_opt("--chunk-tokens", arg, 1, 1 << 20, &c->chunk);
    case CLI_OPT_OVERLAP:
        return int_opt("--overlap", arg, 0, 1 << 20, &c->overlap);
    case CLI_OPT_MODE:
        if (strcmp(arg, "dense") == 0) {
            c->mode = MEDEMBED_SEARCH_DENSE;
        } else if (strcmp(arg, "bm25") == 0) {
            c->mode = MEDEMBED_SEARCH_BM25;
        } else if (strcmp(arg, "hybrid") == 0) {
            c->mode = MEDEMBED_SEARCH_HYBRID;
        } else {
            cli_error("--mode expects dense, bm25 or hybrid, got \"%s\"", arg);
            return 2;
        }
        return 0;
    case CLI_OPT_ALPHA: {
        char *end = NULL;
        double v = strtod(arg, &end);
        if (!*arg || *end || !(v >= 0 && v <= 1)) {
            cli_error("--alpha expects a number in [0, 1], got \"%s\"", arg);
            return 2;
        }
        c->alpha = v;
        return 0;
    }
    case CLI_OPT_EF_SEARCH:
        return int_opt("--ef-search", arg, 1, 1 << 20, &c->ef_search);
    case CLI_OPT_DTYPE: {
        int d = cli_parse_dtype(arg);
        if (d < 0)
            return 2;
        c->dtype = d;
        return 0;
    }
    case CLI_OPT_QUANTIZE:
        /* "f32" is "none" under the name --dtype uses */
        if (strcmp(arg, "int8") == 0) {
            c->int8 = 1;
        } else if (strcmp(arg, "none") != 0 && strcmp(arg, "f32") != 0) {
            cli_error("--quantize expects int8 or none, got \"%s\"", arg);
            return 2;
        }
        return 0;
    case CLI_OPT_PROGRESS:
        c->progress = CLI_PROGRESS_FORCE;
        return 0;
    case CLI_OPT_QUIET:
        c->progress = CLI_PROGRESS_QUIET;
        return 0;
    case CLI_OPT_HELP:
        c->usage(stdout);
        return -1;
    case ':':
        cli_error("option %s needs a value", argv[optind - 1]);
        return 2;
    default:
        cli_error("unknown option \"%s\" (see medembed %s --help)", argv[optind - 1], c->cmd);
        return 2;
    }
}

int cli_common_end(const cli_common *c, int argc, char **argv, const char *hint)
{
    if (optind >= argc)
        return 0;
    if (hint)
        cli_error("unexpected argument \"%s\" (%s)", argv[optind], hint);
    else
        cli_error("unexpected argument \"%s\" (see medembed %s --help)", argv[optind], c->cmd);
    return 2;
}

int cli_resolve_model(const char *arg, char *out, size_t out_len)
{
    return hub_resolve_model(arg, out, out_len); /* cache.c: folder, repo id or default */
}

static int load(const char *arg, int32_t dtype, int32_t max_length, int tok_only,
                medembed_model **out)
{
    char dir[4096];
    if (cli_resolve_model(arg, dir, sizeof dir) != 0)
        return 1;
    medembed_load_opts o;
    medembed_load_opts_init(&o);
    o.dtype = dtype;
    o.max_length = max_length;
    o.tokenizer_only = tok_only;
    char err[1024];
    int rc = medembed_model_load(dir, &o, out, err, sizeof err);
    if (rc != MEDEMBED_OK) {
        cli_error("%s", err);
        return 1;
    }
    return 0;
}

int cli_load_model(const char *arg, int32_t dtype, int32_t max_length, medembed_model **out)
{
    return load(arg, dtype, max_length, 0, out);
}

int cli_load_embedder(const char *arg, int32_t dtype, int32_t max_length, medembed_model **out)
{
    if (load(arg, dtype, max_length, 0, out))
        return 1;
    if (medembed_model_kind(*out) != MEDEMBED_KIND_EMBEDDER) {
        cli_error("%s is a %s: it scores (query, text) pairs (medembed rerank, search --rerank) "
                  "and makes no embeddings; this command needs an embedding model",
                  arg ? arg : "the model", medembed_model_kind_name(medembed_model_kind(*out)));
        medembed_model_free(*out);
        *out = NULL;
        return 1;
    }
    return 0;
}

int cli_load_tokenizer(const char *arg, int32_t max_length, medembed_model **out)
{
    return load(arg, MEDEMBED_DTYPE_F32, max_length, 1, out);
}

/* ---------------------------------------------------------------- input */

int cli_embed_opts(const medembed_model *m, const char *prompt, const char *prompt_name,
                   int32_t role, medembed_embed_opts *eo)
{
    medembed_embed_opts_init(eo);
    if (prompt && prompt_name) {
        cli_error("give --prompt or --prompt-name, not both");
        return 2;
    }
    eo->prompt = prompt;
    eo->prompt_name = prompt_name;
    eo->role = role;
    char err[512];
    const char *p = NULL;
    if (medembed_resolve_prompt(m, eo, &p, NULL, err, sizeof err) != MEDEMBED_OK) {
        cli_error("%s (--prompt-name)", err);
        return 2;
    }
    return 0;
}

int cli_utf8_valid(const char *s, size_t len, size_t *bad_at)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 2;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4;
            min = 0x10000;
        } else {
            goto bad;
        }
        if (i + n > len)
            goto bad;
        unsigned cp = c & (0xffu >> (n + 1));
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                goto bad;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            goto bad;
        i += n;
    }
    return 1;
bad:
    if (bad_at)
        *bad_at = i;
    return 0;
}

int cli_input_open(cli_input *in, const char *path, int jsonl, const char *text_field,
                   int strict)
{
    memset(in, 0, sizeof *in);
    in->text_field = text_field ? text_field : "text";
    in->strict = strict;
    if (!path || strcmp(path, "-") == 0) {
        in->f = stdin;
        in->name = "<stdin>";
    } else {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            cli_error("%s: is a directory, not an input file", path);
            return 1;
        }
        in->f = fopen(path, "rb");
        if (!in->f) {
            cli_error("%s: cannot open input: %s", path, strerror(errno));
            return 1;
        }
        in->name = path;
    }
    if (jsonl < 0) {
        size_t n = path ? strlen(path) : 0;
        jsonl = n > 6 && strcmp(path + n - 6, ".jsonl") == 0;
    }
    in->jsonl = jsonl;
    return 0;
}

void cli_record_free(cli_record *r)
{
    free(r->text);
    free(r->id_json);
    memset(r, 0, sizeof *r);
}

static char *dup_bytes(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

int cli_input_next(cli_input *in, cli_record *r)
{
    memset(r, 0, sizeof *r);
    for (;;) {
        errno = 0;
        ssize_t n = getline(&in->buf, &in->cap, in->f);
        if (n < 0) {
            if (ferror(in->f)) {
                cli_error("%s: read error after line %ld: %s", in->name, in->line,
                          strerror(errno ? errno : EIO));
                return -1;
            }
            return 0;
        }
        in->line++;
        size_t len = (size_t)n;
        if (len && in->buf[len - 1] == '\n')
            len--;
        if (len && in->buf[len - 1] == '\r')
            len--;
        r->line = in->line;
        size_t bad = 0;
        int valid = cli_utf8_valid(in->buf, len, &bad);
        if (!valid && in->strict) {
            cli_error("%s: line %ld: invalid UTF-8 at byte %zu (--strict)", in->name, in->line,
                      bad);
            return -1;
        }
        if (!in->jsonl) {
            if (!valid)
                in->n_invalid_lines++;
            r->text = dup_bytes(in->buf, len);
            r->len = len;
            return r->text ? 1 : -1;
        }
        /* JSONL: blank lines are skipped; each other line is an object or a string. */
        size_t k = 0;
        while (k < len && (in->buf[k] == ' ' || in->buf[k] == '\t'))
            k++;
        if (k == len)
            continue;
        if (!valid) {
            cli_error("%s: line %ld: invalid UTF-8 at byte %zu in a JSON line", in->name,
                      in->line, bad);
            return -1;
        }
        json_error_t je;
        json_t *j = json_loadb(in->buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!j) {
            cli_error("%s: line %ld: invalid JSON at column %d: %s", in->name, in->line,
                      je.column, je.text);
            return -1;
        }
        json_t *t = json_is_string(j) ? j : json_object_get(j, in->text_field);
        if (!json_is_string(t)) {
            cli_error("%s: line %ld: no string field \"%s\" (set --text-field)", in->name,
                      in->line, in->text_field);
            json_decref(j);
            return -1;
        }
        r->text = dup_bytes(json_string_value(t), json_string_length(t));
        r->len = json_string_length(t);
        if (json_is_object(j)) {
            json_t *id = json_object_get(j, "_id");
            if (!id)
                id = json_object_get(j, "id");
            if (id && (json_is_string(id) || json_is_integer(id)))
                r->id_json = json_dumps(id, JSON_ENCODE_ANY);
        }
        json_decref(j);
        return r->text ? 1 : -1;
    }
}

void cli_input_close(cli_input *in)
{
    if (in->f && in->f != stdin)
        fclose(in->f);
    free(in->buf);
    memset(in, 0, sizeof *in);
}

void cli_json_string(FILE *f, const char *s, size_t len)
{
    static const char hx[] = "0123456789abcdef";
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u00%c%c", hx[c >> 4], hx[c & 15]);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

/* ------------------------------------------------------------------ npy */

/* NPY v1.0: magic, version, uint16 header length, a Python dict literal
 * padded with spaces to a 64-byte boundary and ended by '\n'. The header is
 * a fixed 128 bytes so a seekable file can be rewritten with the final row
 * count at the end. */
static int npy_header(FILE *f, int64_t rows, int32_t dim)
{
    char dict[128];
    int n = snprintf(dict, sizeof dict,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %d), }",
                     (long long)rows, dim);
    if (n < 0 || n > 128 - 10 - 1)
        return -1;
    unsigned char hdr[128];
    memset(hdr, ' ', sizeof hdr);
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    hdr[8] = (unsigned char)(128 - 10);
    hdr[9] = 0;
    memcpy(hdr + 10, dict, (size_t)n);
    hdr[127] = '\n';
    return fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr ? 0 : -1;
}

int cli_npy_begin(cli_npy *w, FILE *f, int32_t dim)
{
    memset(w, 0, sizeof *w);
    w->f = f;
    w->dim = dim;
    struct stat st;
    w->seekable = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && ftell(f) == 0;
    return w->seekable ? npy_header(f, 0, dim) : 0;
}

int cli_npy_rows(cli_npy *w, const float *rows, int64_t n)
{
    size_t cnt = (size_t)n * (size_t)w->dim;
    if (w->seekable) {
        if (fwrite(rows, sizeof *rows, cnt, w->f) != cnt)
            return -1;
    } else {
        size_t have = (size_t)w->rows * (size_t)w->dim;
        if (have + cnt > w->held_cap) {
            size_t cap = w->held_cap ? w->held_cap : 1 << 16;
            while (cap < have + cnt)
                cap *= 2;
            float *p = realloc(w->held, sizeof *p * cap);
            if (!p)
                return -1;
            w->held = p;
            w->held_cap = cap;
        }
        memcpy(w->held + have, rows, sizeof *rows * cnt);
    }
    w->rows += n;
    return 0;
}

int cli_npy_end(cli_npy *w)
{
    int rc = 0;
    if (w->seekable) {
        if (fflush(w->f) != 0 || fseek(w->f, 0, SEEK_SET) != 0 ||
            npy_header(w->f, w->rows, w->dim) != 0 || fseek(w->f, 0, SEEK_END) != 0)
            rc = -1;
    } else {
        size_t cnt = (size_t)w->rows * (size_t)w->dim;
        if (npy_header(w->f, w->rows, w->dim) != 0 ||
            (cnt && fwrite(w->held, sizeof(float), cnt, w->f) != cnt))
            rc = -1;
    }
    free(w->held);
    w->held = NULL;
    return rc;
}

int cli_rerank_top(const char *rerank, long k, long *rerank_top)
{
    if (*rerank_top && !rerank) {
        cli_error("--rerank-top applies to --rerank CROSS_ENCODER");
        return 2;
    }
    if (!rerank)
        return 0;
    if (!*rerank_top)
        *rerank_top = k > MEDEMBED_RERANK_TOP_DEFAULT ? k : MEDEMBED_RERANK_TOP_DEFAULT;
    if (k > *rerank_top) {
        cli_error("-k %ld is more than --rerank-top %ld: the cross-encoder orders only the hits "
                  "it reads (raise --rerank-top)",
                  k, *rerank_top);
        return 2;
    }
    return 0;
}
