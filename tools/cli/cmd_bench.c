/*
 * cmd_bench.c - `medembed bench`: throughput and latency of the encoder on
 * fixed shapes (batch x sequence length, random ids) or on a real corpus
 * (tokenization included), as text or JSON. Uses only the public API.
 *
 * Each shape runs `warmup` untimed calls, then `runs` timed calls of
 * medembed_ctx_embed_ids on the same inputs; it reports the median and the
 * 90th percentile of the per-call wall time, tokens/s and sequences/s at the
 * median, the GFLOP/s that implies (dense layers + attention, see
 * encoder_flops) and its share of the level's measured multiply-add peak
 * (medembed_peak_gflops). With -i, a call is "tokenize and embed every
 * text of the file" through medembed_ctx_embed.
 */
#define MEDEMBED_EXPERIMENTAL
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: medembed bench -m MODEL [options]\n"
               "\n"
               "Measures encoder throughput and latency on random token ids of fixed\n"
               "shapes, or on a corpus (-i) with tokenization included. Also reports\n"
               "the model load time and the process's peak RSS (load_s, rss_peak_mb).\n"
               "\n"
               "  -m, --model DIR          model folder (or ORG/NAME[@REV] in the cache)\n"
               "      --shapes LIST        BATCHxSEQ,... (default 1x16,32x128,8x512)\n"
               "      --dtype f32|bf16|int8  compute precision (default f32)\n"
               "      --threads N          worker threads (default: all CPUs)\n"
               "      --runs N             timed calls per shape (default 7)\n"
               "      --warmup N           untimed calls first (default 2)\n"
               "  -i, --input FILE         corpus workload: JSONL with a \"text\" field (or\n"
               "                           text lines); every text is tokenized and embedded\n"
               "      --text-field NAME    JSONL field holding the text (default text)\n"
               "      --batch-tokens N     token budget per forward pass (default: library's)\n"
               "      --peak-seconds S     time spent measuring the peak (default 0.5; 0 = skip)\n"
               "      --json               print {\"results\": [...]} JSON instead of a table\n"
               CLI_HELP_PROGRESS);
}

typedef struct {
    int32_t batch, seq;
} shape;

typedef struct {
    int32_t layers, hidden, ffn, vocab;
} dims;

/* CPU seconds of the whole process (all threads; spinning included). */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Multiply-adds x 2 of one sequence of n tokens: per layer, the QKV, output
 * and two FFN projections (n (4 H^2 + 2 H F)) plus scores and the weighted
 * sum of values (2 n^2 H). */
static double encoder_flops(const dims *d, double n)
{
    double H = d->hidden, F = d->ffn;
    return 2.0 * d->layers * (n * (4 * H * H + 2 * H * F) + 2 * n * n * H);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* nearest-rank percentile of sorted v[0..n) */
static double pct(const double *v, int n, double p)
{
    int i = (int)(p * n + 0.999999) - 1;
    if (i < 0)
        i = 0;
    if (i >= n)
        i = n - 1;
    return v[i];
}

static int parse_shapes(const char *s, shape *out, int cap)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long b = strtol(p, &end, 10);
        if (end == p || (*end != 'x' && *end != 'X'))
            return -1;
        p = end + 1;
        long q = strtol(p, &end, 10);
        if (end == p || b < 1 || b > 100000 || q < 1 || q > 100000 || n == cap)
            return -1;
        out[n].batch = (int32_t)b;
        out[n].seq = (int32_t)q;
        n++;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return n;
}

static int get_dims(const medembed_model *m, dims *d)
{
    size_t n = medembed_model_info_json(m, NULL, 0);
    char *buf = malloc(n + 1);
    if (!buf)
        return -1;
    medembed_model_info_json(m, buf, n + 1);
    json_t *j = json_loads(buf, 0, NULL);
    free(buf);
    if (!j)
        return -1;
    d->layers = (int32_t)json_integer_value(json_object_get(j, "layers"));
    d->hidden = (int32_t)json_integer_value(json_object_get(j, "dim"));
    d->ffn = (int32_t)json_integer_value(json_object_get(j, "intermediate_size"));
    d->vocab = (int32_t)json_integer_value(json_object_get(j, "vocab_size"));
    json_decref(j);
    return d->layers > 0 && d->hidden > 0 && d->ffn > 0 && d->vocab > 0 ? 0 : -1;
}

/* Peak resident set of the process so far, in MiB (Linux: ru_maxrss is
 * in KiB): weights + activations + everything else, as `time -v` reports. */
static double rss_peak_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_maxrss / 1024.0;
}

typedef struct {
    json_t *results;
    int json;
    const char *dtype_name;
    int32_t threads;
    double peak;
    double load_s;
} report;

static void report_row(report *r, const char *what, int32_t batch, int32_t seq, double *ms,
                       double *cpu_ms, int runs, double tokens, double seqs, double flops,
                       json_t *extra)
{
    qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
    qsort(cpu_ms, (size_t)runs, sizeof *cpu_ms, cmp_double);
    double cpu_med = runs % 2 ? cpu_ms[runs / 2] : 0.5 * (cpu_ms[runs / 2 - 1] + cpu_ms[runs / 2]);
    double med = runs % 2 ? ms[runs / 2] : 0.5 * (ms[runs / 2 - 1] + ms[runs / 2]);
    double p90 = pct(ms, runs, 0.9);
    double tps = tokens / (med * 1e-3), sps = seqs / (med * 1e-3);
    double gf = flops / (med * 1e-3) * 1e-9;
    double share = r->peak > 0 ? gf / r->peak : 0;
    if (r->json) {
        json_t *o = json_object();
        json_object_set_new(o, "batch", json_integer(batch));
        json_object_set_new(o, "seq", json_integer(seq));
        json_object_set_new(o, "dtype", json_string(r->dtype_name));
        json_object_set_new(o, "threads", json_integer(r->threads));
        json_object_set_new(o, "tokens_per_s", json_real(tps));
        json_object_set_new(o, "ms_median", json_real(med));
        json_object_set_new(o, "ms_p90", json_real(p90));
        json_object_set_new(o, "ms_min", json_real(ms[0]));
        json_object_set_new(o, "cpu_ms_median", json_real(cpu_med));
        json_object_set_new(o, "seqs_per_s", json_real(sps));
        json_object_set_new(o, "gflops", json_real(gf));
        json_object_set_new(o, "peak_share", json_real(share));
        json_object_set_new(o, "runs", json_integer(runs));
        json_object_set_new(o, "workload", json_string(what));
        json_object_set_new(o, "engine", json_string("medembed"));
        json_object_set_new(o, "isa", json_string(medembed_isa()));
        json_object_set_new(o, "peak_gflops", json_real(r->peak));
        json_object_set_new(o, "load_s", json_real(r->load_s));
        json_object_set_new(o, "rss_peak_mb", json_real(rss_peak_mb()));
        if (extra)
            json_object_update(o, extra);
        json_array_append_new(r->results, o);
    } else {
        printf("%-7s %6d %6d %10.1f %9.2f %10.2f %10.2f %9.1f %6.1f%% %10.2f\n", what, batch, seq,
               tps, sps, med, p90, gf, 100 * share, cpu_med);
    }
    if (extra)
        json_decref(extra);
}

/* The progress line: texts embedded over all runs of all workloads. */
static cli_progress prog;

static int bench_shape(medembed_ctx *c, const dims *d, shape s, int warmup, int runs, report *r)
{
    size_t n = (size_t)s.batch * (size_t)s.seq;
    int32_t *ids = malloc(sizeof *ids * n);
    int32_t *lens = malloc(sizeof *lens * (size_t)s.batch);
    float *out = malloc(sizeof *out * (size_t)s.batch * (size_t)d->hidden);
    double *ms = malloc(sizeof *ms * (size_t)runs), *cms = malloc(sizeof *cms * (size_t)runs);
    if (!ids || !lens || !out || !ms || !cms) {
        free(ids);
        free(lens);
        free(out);
        free(ms);
        free(cms);
        cli_error("out of memory for shape %dx%d", s.batch, s.seq);
        return 1;
    }
    /* [CLS] random pieces [SEP], fixed seed: reproducible inputs */
    uint32_t st = 0x9e3779b9u ^ (uint32_t)(s.batch * 131 + s.seq);
    int32_t lo = d->vocab > 2000 ? 1000 : 1, span = d->vocab - lo;
    for (int32_t b = 0; b < s.batch; b++) {
        lens[b] = s.seq;
        for (int32_t t = 0; t < s.seq; t++) {
            st = st * 1664525u + 1013904223u;
            int32_t id = lo + (int32_t)((st >> 8) % (uint32_t)span);
            if (t == 0 && s.seq > 1)
                id = 101 < d->vocab ? 101 : 0;
            else if (t == s.seq - 1 && s.seq > 1)
                id = 102 < d->vocab ? 102 : 0;
            ids[(size_t)b * (size_t)s.seq + (size_t)t] = id;
        }
    }
    int rc = 0;
    for (int i = 0; i < warmup + runs && rc == 0; i++) {
        double t0 = now_s(), c0 = cpu_s();
        int e = medembed_ctx_embed_ids(c, ids, lens, s.batch, 0, out);
        double t1 = now_s(), c1 = cpu_s();
        cli_progress_add(&prog, s.batch, (int64_t)s.batch * s.seq, 0, -1);
        if (e != MEDEMBED_OK) {
            cli_error("embed %dx%d: %s: %s", s.batch, s.seq, medembed_status_str(e),
                      medembed_ctx_last_error(c));
            rc = 1;
        } else if (i >= warmup) {
            ms[i - warmup] = (t1 - t0) * 1e3;
            cms[i - warmup] = (c1 - c0) * 1e3;
        }
    }
    if (rc == 0)
        report_row(r, "shape", s.batch, s.seq, ms, cms, runs, (double)n, (double)s.batch,
                   s.batch * encoder_flops(d, s.seq), NULL);
    free(ids);
    free(lens);
    free(out);
    free(ms);
    free(cms);
    return rc;
}

/* `in` is the opened corpus (read to the end here; the caller closes it), `path` its name. */
static int bench_corpus(medembed_ctx *c, const medembed_model *m, const dims *d, cli_input *in,
                        const char *path, int32_t batch_tokens, int warmup, int runs, report *r)
{
    char **texts = NULL;
    size_t *lens = NULL;
    int32_t n = 0, cap = 0;
    cli_record rec;
    int got;
    while ((got = cli_input_next(in, &rec)) == 1) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            char **t2 = realloc(texts, sizeof *t2 * (size_t)cap);
            size_t *l2 = realloc(lens, sizeof *l2 * (size_t)cap);
            if (!t2 || !l2) {
                free(t2 ? t2 : texts);
                free(l2 ? l2 : lens);
                cli_error("out of memory reading %s", path);
                return 1;
            }
            texts = t2;
            lens = l2;
        }
        texts[n] = rec.text;
        lens[n] = rec.len;
        rec.text = NULL;
        cli_record_free(&rec);
        n++;
    }
    int rc = got < 0 ? 1 : 0;
    medembed_text_info *info = calloc((size_t)(n ? n : 1), sizeof *info);
    float *out = malloc(sizeof *out * (size_t)(n ? n : 1) * (size_t)d->hidden);
    double *ms = malloc(sizeof *ms * (size_t)runs), *cms = malloc(sizeof *cms * (size_t)runs);
    if (!info || !out || !ms || !cms)
        rc = 1;
    if (rc == 0 && n == 0) {
        cli_error("%s holds no texts", path);
        rc = 1;
    }
    medembed_embed_opts o;
    medembed_embed_opts_init(&o);
    o.batch_tokens = batch_tokens;
    prog.total += (int64_t)n * (warmup + runs);
    if (prog.total > 0)
        prog.total_kind = CLI_TOTAL_ITEMS;
    for (int i = 0; i < warmup + runs && rc == 0; i++) {
        double t0 = now_s(), c0 = cpu_s();
        int e = medembed_ctx_embed(c, (const char *const *)texts, lens, n, &o, out, info);
        double t1 = now_s(), c1 = cpu_s();
        if (e == MEDEMBED_OK) {
            int64_t tok = 0, trunc = 0;
            for (int32_t k = 0; k < n; k++) {
                tok += info[k].n_tokens;
                trunc += info[k].truncated;
            }
            cli_progress_add(&prog, n, tok, trunc, -1);
        }
        if (e != MEDEMBED_OK) {
            cli_error("embed %s: %s: %s", path, medembed_status_str(e), medembed_ctx_last_error(c));
            rc = 1;
        } else if (i >= warmup) {
            ms[i - warmup] = (t1 - t0) * 1e3;
            cms[i - warmup] = (c1 - c0) * 1e3;
        }
    }
    if (rc == 0) {
        double tokens = 0, flops = 0;
        int32_t longest = 0;
        for (int32_t i = 0; i < n; i++) {
            tokens += info[i].n_tokens;
            flops += encoder_flops(d, info[i].n_tokens);
            if (info[i].n_tokens > longest)
                longest = info[i].n_tokens;
        }
        json_t *extra = json_object();
        json_object_set_new(extra, "docs", json_integer(n));
        json_object_set_new(extra, "tokens", json_integer((json_int_t)tokens));
        json_object_set_new(extra, "mean_tokens", json_real(tokens / n));
        json_object_set_new(extra, "docs_per_s", json_real(0)); /* filled below */
        json_object_set_new(extra, "input", json_string(path));
        /* batch = documents, seq = mean tokens per document */
        double *msc = malloc(sizeof *msc * (size_t)runs);
        if (msc) {
            memcpy(msc, ms, sizeof *ms * (size_t)runs);
            qsort(msc, (size_t)runs, sizeof *msc, cmp_double);
            double med = runs % 2 ? msc[runs / 2] : 0.5 * (msc[runs / 2 - 1] + msc[runs / 2]);
            json_object_set_new(extra, "docs_per_s", json_real(n / (med * 1e-3)));
            free(msc);
        }
        report_row(r, "corpus", n, (int32_t)(tokens / n + 0.5), ms, cms, runs, tokens, n, flops,
                   extra);
        (void)longest;
        (void)m;
    }
    for (int32_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    free(info);
    free(out);
    free(ms);
    free(cms);
    return rc;
}

enum {
    OPT_SHAPES = CLI_OPT_LOCAL,
    OPT_RUNS,
    OPT_WARMUP,
    OPT_JSON,
    OPT_PEAK,
    OPT_BTOK
};

int cmd_bench(int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_OPTION_MODEL,
        CLI_OPTION_INPUT,
        {"shapes", required_argument, 0, OPT_SHAPES},
        CLI_OPTION_DTYPE,
        CLI_OPTION_THREADS,
        {"runs", required_argument, 0, OPT_RUNS},
        {"warmup", required_argument, 0, OPT_WARMUP},
        {"json", no_argument, 0, OPT_JSON},
        {"peak-seconds", required_argument, 0, OPT_PEAK},
        CLI_OPTION_TEXT_FIELD,
        {"batch-tokens", required_argument, 0, OPT_BTOK},
        CLI_OPTION_PROGRESS,
        CLI_OPTION_QUIET,
        CLI_OPTION_HELP,
        CLI_OPTION_END,
    };
    cli_common co;
    cli_common_init(&co, "bench", bench_usage);
    const char *shapes_s = "1x16,32x128,8x512";
    int json = 0;
    long runs = 7, warmup = 2, btok = 0;
    double peak_s = 0.5;
    int ch, prc;
    while ((ch = getopt_long(argc, argv, ":m:i:h", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_SHAPES:
            shapes_s = optarg;
            break;
        case OPT_RUNS:
            if (cli_parse_int("--runs", optarg, 1, 100000, &runs))
                return 2;
            break;
        case OPT_WARMUP:
            if (cli_parse_int("--warmup", optarg, 0, 100000, &warmup))
                return 2;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_PEAK: {
            char *end = NULL;
            peak_s = strtod(optarg, &end);
            if (!end || *end || !(peak_s >= 0) || peak_s > 60) {
                cli_error("--peak-seconds expects a number of seconds in [0, 60], got \"%s\"",
                          optarg);
                return 2;
            }
            break;
        }
        case OPT_BTOK:
            if (cli_parse_int("--batch-tokens", optarg, 0, 1 << 24, &btok))
                return 2;
            break;
        default:
            if ((prc = cli_common_opt(&co, ch, optarg, argv)) != 0)
                return prc < 0 ? 0 : prc; /* -1: --help */
        }
    }
    if (cli_common_end(&co, argc, argv, NULL))
        return 2;
    const char *model = co.model, *input = co.input;
    const int dtype = co.dtype;
    shape shapes[64];
    int n_shapes = 0;
    if (!input) {
        n_shapes = parse_shapes(shapes_s, shapes, 64);
        if (n_shapes <= 0) {
            cli_error("--shapes expects BATCHxSEQ[,BATCHxSEQ...], got \"%s\"", shapes_s);
            return 2;
        }
    }
    /* the corpus is opened before the (possibly slow) model load, so a bad path fails fast */
    cli_input in;
    if (input && cli_input_open(&in, input, -1, co.text_field, 0) != 0)
        return 1;
    int rc = 0;
    medembed_ctx *c = NULL;
    double t0 = now_s();
    medembed_model *m = NULL;
    if (cli_load_model(model, dtype, 0, &m)) {
        rc = 1;
        goto out;
    }
    double load_s = now_s() - t0;
    dims d;
    if (get_dims(m, &d) != 0) {
        cli_error("cannot read the model's dimensions");
        rc = 1;
        goto out;
    }
    for (int i = 0; i < n_shapes; i++)
        if (shapes[i].seq > medembed_model_max_length(m)) {
            cli_error("shape %dx%d: sequence longer than the model's %d tokens", shapes[i].batch,
                      shapes[i].seq, medembed_model_max_length(m));
            rc = 2;
            goto out;
        }
    int e = medembed_ctx_create(m, (int32_t)co.threads, &c);
    if (e != MEDEMBED_OK) {
        cli_error("cannot create a context: %s", medembed_status_str(e));
        rc = 1;
        goto out;
    }
    static const char *DT[] = {"f32", "bf16", "int8"};
    report r = {json_array(), json, DT[dtype], medembed_ctx_threads(c), 0, load_s};
    if (peak_s > 0)
        r.peak = medembed_peak_gflops(dtype, r.threads, peak_s);
    if (!json) {
        printf("model %s: isa %s, dtype %s, %d threads, load %.3f s\n", model ? model : "(default)",
               medembed_isa(), DT[dtype], r.threads, load_s);
        if (r.peak > 0)
            printf("measured peak: %.1f G%s/s (%d threads)\n", r.peak,
                   dtype == MEDEMBED_DTYPE_INT8 ? "OP" : "FLOP", r.threads);
        printf("%-7s %6s %6s %10s %9s %10s %10s %9s %7s %10s\n", "what", "batch", "seq", "tokens/s",
               "seq/s", "ms median", "ms p90", "GFLOP/s", "peak", "cpu ms");
    }
    int64_t planned = 0;
    for (int i = 0; i < n_shapes; i++)
        planned += (int64_t)shapes[i].batch * (warmup + runs);
    cli_progress_begin(&prog, co.progress, "bench", CLI_TOTAL_ITEMS, planned);
    for (int i = 0; i < n_shapes && rc == 0; i++)
        rc = bench_shape(c, &d, shapes[i], (int)warmup, (int)runs, &r);
    if (input && rc == 0)
        rc = bench_corpus(c, m, &d, &in, input, (int32_t)btok, (int)warmup, (int)runs, &r);
    if (rc == 0)
        cli_progress_end(&prog, input ? in.n_invalid_lines : 0);
    if (!json && rc == 0)
        printf("peak RSS %.0f MiB (weights + activations + runtime)\n", rss_peak_mb());
    if (json && rc == 0) {
        json_t *o = json_object();
        json_object_set_new(o, "results", r.results);
        r.results = NULL;
        char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        if (s)
            puts(s);
        free(s);
        json_decref(o);
    }
    json_decref(r.results);
out:
    medembed_ctx_free(c);
    medembed_model_free(m);
    if (input)
        cli_input_close(&in);
    return rc;
}
