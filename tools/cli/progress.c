/*
 * progress.c - the progress line of long commands (see progress.h).
 */
#include "progress.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TTY_PERIOD_S 0.25 /* at most 4 redraws a second on a terminal */
#define LOG_PERIOD_S 1.0  /* one line a second to a file (--progress) */

static cli_progress *drawn; /* the line on the terminal now, if any */

double cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_human_bytes(char *out, size_t n, int64_t bytes)
{
    if (bytes >= (int64_t)1 << 30)
        snprintf(out, n, "%.2f GB", (double)bytes / 1e9);
    else if (bytes >= 1000000)
        snprintf(out, n, "%.1f MB", (double)bytes / 1e6);
    else if (bytes >= 1000)
        snprintf(out, n, "%.1f kB", (double)bytes / 1e3);
    else
        snprintf(out, n, "%lld B", (long long)bytes);
}

int cli_progress_wanted(int mode)
{
    if (mode == CLI_PROGRESS_QUIET)
        return 0;
    return mode == CLI_PROGRESS_FORCE || isatty(STDERR_FILENO);
}

int64_t cli_progress_file_size(FILE *f)
{
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    return (int64_t)st.st_size;
}

void cli_progress_begin(cli_progress *p, int mode, const char *label, int total_kind,
                        int64_t total)
{
    *p = (cli_progress){0};
    p->on = cli_progress_wanted(mode);
    p->tty = isatty(STDERR_FILENO);
    p->label = label;
    p->total_kind = total > 0 ? total_kind : CLI_TOTAL_NONE;
    p->total = total;
    p->t0 = cli_now_s();
    p->last = p->t0 - LOG_PERIOD_S; /* the first batch draws at once */
}

void cli_progress_skip(cli_progress *p, int64_t pos)
{
    p->pos = p->base = pos;
    p->t0 = cli_now_s();
}

static void eta(char *out, size_t n, double s)
{
    long t = (long)(s + 0.5);
    snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static void draw(cli_progress *p, double now)
{
    double dt = now - p->t0;
    double tps = dt > 0 ? (double)p->texts / dt : 0, kps = dt > 0 ? (double)p->tokens / dt : 0;
    char done[96] = "", left[48] = "";
    if (p->total_kind != CLI_TOTAL_NONE) {
        double frac = (double)p->pos / (double)p->total;
        if (frac > 1)
            frac = 1;
        if (p->total_kind == CLI_TOTAL_BYTES) {
            char a[32], b[32];
            cli_human_bytes(a, sizeof a, p->pos);
            cli_human_bytes(b, sizeof b, p->total);
            snprintf(done, sizeof done, "  %5.1f%% (%s of %s)", 100 * frac, a, b);
        } else {
            snprintf(done, sizeof done, "  %5.1f%% (%lld of %lld)", 100 * frac,
                     (long long)p->pos, (long long)p->total);
        }
        if (p->pos > p->base && p->pos < p->total && dt > 0.5) {
            char e[32];
            eta(e, sizeof e, dt * (double)(p->total - p->pos) / (double)(p->pos - p->base));
            snprintf(left, sizeof left, "  ETA %s", e);
        }
    }
    char toks[48] = "";
    if (!p->no_tokens)
        snprintf(toks, sizeof toks, "  %.0f tokens/s", kps);
    fprintf(stderr, "%smedembed %s: %lld texts%s  %.0f texts/s%s%s%s", p->tty ? "\r\033[K" : "",
            p->label, (long long)p->texts, done, tps, toks, left, p->tty ? "" : "\n");
    fflush(stderr);
    p->drew = p->tty;
    drawn = p->drew ? p : drawn;
}

void cli_progress_add(cli_progress *p, int64_t texts, int64_t tokens, int64_t truncated,
                      int64_t pos)
{
    p->texts += texts;
    p->tokens += tokens;
    p->truncated += truncated;
    p->pos = pos >= 0 ? pos : p->pos + texts;
    if (!p->on)
        return;
    double now = cli_now_s();
    if (now - p->last < (p->tty ? TTY_PERIOD_S : LOG_PERIOD_S))
        return;
    p->last = now;
    draw(p, now);
}

void cli_progress_clear(cli_progress *p)
{
    if (!p)
        p = drawn;
    if (p && p->drew) {
        drawn = NULL;
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drew = 0;
    }
}

void cli_progress_end(cli_progress *p, int64_t invalid)
{
    p->invalid = invalid;
    if (!p->on)
        return;
    cli_progress_clear(p);
    char toks[48] = "tokens n/a";
    if (!p->no_tokens)
        snprintf(toks, sizeof toks, "%lld tokens", (long long)p->tokens);
    fprintf(stderr, "medembed %s: done: %lld texts, %s, %lld truncated, %lld invalid UTF-8, %.1f s\n",
            p->label, (long long)p->texts, toks, (long long)p->truncated, (long long)p->invalid,
            cli_now_s() - p->t0);
    fflush(stderr);
}
