/*
 * hub.c - downloads a model from the Hugging Face hub into a folder, the
 * way `huggingface-cli download` would, but only the files the engine reads.
 *
 * One pull, in order:
 *   1. Look at the destination. A folder from an earlier pull carries
 *      HUB_MANIFEST with its commit; a pinned commit that matches needs no
 *      network at all.
 *   2. Lock the destination's parent folder (flock), so two processes that
 *      both auto-pull the default model do not download it twice.
 *   3. GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true and keep
 *      the wanted files (hub_parse.c). An error here creates nothing.
 *   4. Download each file into a hidden staging folder next to the
 *      destination, `.NAME.partial/`, as FILE.incomplete; resume it with a
 *      Range request if bytes are already there; check its size and, for
 *      LFS files, its sha256; then rename it to FILE.
 *   5. Write the manifest, and swap the staging folder into place with one
 *      rename (renameat2 RENAME_EXCHANGE when replacing an older snapshot).
 * So the destination either does not exist or is complete: an interrupted
 * pull leaves only the hidden staging folder, which the next pull resumes.
 *
 * Files are fetched from {endpoint}/{repo}/resolve/{commit}/{file}, by the
 * commit the listing named, so every file comes from one snapshot even if
 * the branch moves during the pull. LFS files answer with a redirect to a
 * CDN; libcurl follows it and, since 7.58/7.83, does not forward our
 * Authorization header to another host or port.
 *
 * Timeouts: a connect timeout, and a stall timeout (less than 1 byte/s for
 * N seconds) instead of a total timeout, so a slow but live link never
 * fails while a dead one fails in seconds. Broken connections, stalls, 429
 * and 5xx are retried with backoff, resuming where the data stopped.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "hub.h"
#include "util/sha256.h" /* me_sha256_file, borrowed from src/ */

#define STAGE_STATE ".medembed-partial" /* in the staging folder: its commit */
#define ERR_BODY_MAX 4096               /* bytes of an error response we keep */

/* ------------------------------------------------------------ environment */

static int env_long(const char *name, long def, long lo, long hi, long *out)
{
    const char *s = getenv(name);
    if (!s || !*s) {
        *out = def;
        return 0;
    }
    return cli_parse_int(name, s, lo, hi, out);
}

static int has_ctl_or_space(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

int hub_opts_from_env(hub_opts *o)
{
    memset(o, 0, sizeof *o);
    const char *ep = getenv("HF_ENDPOINT");
    if (!ep || !*ep)
        ep = HUB_DEFAULT_ENDPOINT;
    size_t n = strlen(ep);
    while (n > 0 && ep[n - 1] == '/')
        n--;
    if (n >= sizeof o->endpoint ||
        (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)) {
        cli_error("HF_ENDPOINT must be an http:// or https:// URL, got \"%.200s\"", ep);
        return -1;
    }
    memcpy(o->endpoint, ep, n);
    o->endpoint[n] = 0;
    if (has_ctl_or_space(o->endpoint)) {
        cli_error("HF_ENDPOINT must not contain spaces or control characters");
        return -1;
    }
    const char *tok = getenv("HF_TOKEN");
    if (tok && *tok) {
        /* Tolerate the newline `cat token` leaves; reject anything that could
         * break the header. */
        size_t t = strlen(tok);
        while (t > 0 && (tok[t - 1] == '\n' || tok[t - 1] == '\r' || tok[t - 1] == ' '))
            t--;
        if (t >= sizeof o->token) {
            cli_error("HF_TOKEN is longer than %zu characters", sizeof o->token - 1);
            return -1;
        }
        memcpy(o->token, tok, t);
        o->token[t] = 0;
        if (has_ctl_or_space(o->token)) {
            cli_error("HF_TOKEN contains spaces or control characters");
            return -1;
        }
    }
    if (env_long("MEDEMBED_CONNECT_TIMEOUT", 15, 1, 600, &o->connect_timeout) ||
        env_long("MEDEMBED_STALL_TIMEOUT", 60, 1, 3600, &o->stall_timeout) ||
        env_long("MEDEMBED_PULL_RETRIES", 3, 0, 20, &o->retries))
        return -1;
    o->progress = cli_progress_wanted(CLI_PROGRESS_AUTO);
    return 0;
}

static int env_true(const char *name)
{
    const char *s = getenv(name);
    if (!s)
        return 0;
    return strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0 ||
           strcasecmp(s, "on") == 0;
}

const char *hub_offline(void)
{
    if (env_true("MEDEMBED_OFFLINE"))
        return "MEDEMBED_OFFLINE";
    if (env_true("HF_HUB_OFFLINE"))
        return "HF_HUB_OFFLINE";
    return NULL;
}

void hub_print_offline_hint(const char *repo, const char *rev, const char *dest)
{
    int pinned = rev && *rev && strcmp(rev, ME_HUB_DEFAULT_REVISION) != 0;
    fprintf(stderr,
            "  On a connected machine run:  medembed pull %s%s%s\n"
            "  and copy the folder it prints to %s here,\n"
            "  or pass a model folder you already have with -m DIR.\n",
            repo, pinned ? "@" : "", pinned ? rev : "", dest);
}

/* ------------------------------------------------------------- file tools */

static int mkdir_p(const char *path)
{
    char buf[4096];
    int w = snprintf(buf, sizeof buf, "%s", path);
    if (w < 0 || (size_t)w >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p) != 0 && errno != ENOENT ? -1 : 0;
}

/* rm -rf of a folder we created (staging or an old snapshot). */
static int rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* parent and base name of dest (which has no trailing '/'). */
static int split_path(const char *dest, char *parent, size_t pn, const char **base)
{
    const char *slash = strrchr(dest, '/');
    if (!slash) {
        snprintf(parent, pn, ".");
        *base = dest;
        return 0;
    }
    size_t n = (size_t)(slash - dest);
    if (n == 0)
        n = 1; /* "/name" */
    if (n >= pn)
        return -1;
    memcpy(parent, dest, n);
    parent[n] = 0;
    *base = slash + 1;
    return **base ? 0 : -1;
}

static char *read_small(const char *path, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(cap + 1);
    size_t n = buf ? fread(buf, 1, cap + 1, f) : 0;
    fclose(f);
    if (!buf || n > cap) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
}


/* --------------------------------------------------------------- transfer */

typedef struct pull pull;

/* One HTTP GET: the body goes to fd (resuming at offset) or to memory. */
typedef struct xfer {
    pull *p;
    CURL *curl;
    int fd;           /* -1: collect the body in mem */
    int64_t offset;   /* bytes already in fd; a Range request asks for the rest */
    size_t mem_cap;
    long status;      /* of the response whose body we are receiving */
    int64_t range_start; /* from Content-Range, -1 if none */
    char *mem;
    size_t mem_len;
    int64_t written;  /* body bytes written to fd by this transfer */
    int write_errno;
    int too_big;
    int bad_range;
    char err_code[64];  /* X-Error-Code, as the hub sends it */
    char err_msg[256];  /* X-Error-Message */
    char errbuf[CURL_ERROR_SIZE];
} xfer;

struct pull {
    const hub_opts *o;
    CURL *curl;
    struct curl_slist *headers;
    const char *repo, *rev;
    char ref[ME_HUB_REPO_BUF + ME_HUB_REV_BUF + 8]; /* repo[@rev] for messages */
    /* progress */
    int64_t done_bytes;  /* finished files */
    int64_t total_bytes;
    int64_t file_base;   /* bytes of the current file present before this transfer */
    size_t file_i, n_files;
    const char *file_name;
    double t0, last_draw;
    int64_t t0_bytes;
    int drew;
    int lock_fd; /* flock on the destination's parent, -1 before it is taken */
};

static void draw_progress(pull *p, int64_t now_in_file, int force)
{
    if (!p->o->progress)
        return;
    double t = cli_now_s();
    if (!force && t - p->last_draw < 0.1)
        return;
    p->last_draw = t;
    int64_t done = p->done_bytes + now_in_file;
    double pct = p->total_bytes > 0 ? 100.0 * (double)done / (double)p->total_bytes : 0;
    if (pct > 100)
        pct = 100;
    char a[32], b[32], r[32];
    cli_human_bytes(a, sizeof a, done);
    cli_human_bytes(b, sizeof b, p->total_bytes);
    double dt = t - p->t0;
    cli_human_bytes(r, sizeof r, dt > 0.2 ? (int64_t)((double)(done - p->t0_bytes) / dt) : 0);
    char bar[21];
    int fill = (int)(pct / 5);
    for (int i = 0; i < 20; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[20] = 0;
    fprintf(stderr, "\r\033[K[%zu/%zu] %-26.26s [%s] %5.1f%%  %s / %s  %s/s", p->file_i + 1,
            p->n_files, p->file_name ? p->file_name : "", bar, pct, a, b, r);
    fflush(stderr);
    p->drew = 1;
}

static void clear_progress(pull *p)
{
    if (p->drew) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drew = 0;
    }
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)ultotal;
    (void)ulnow;
    xfer *x = ud;
    if (x->fd >= 0)
        draw_progress(x->p, x->p->file_base + (int64_t)dlnow, 0);
    return 0;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A new response (a redirect hop or the final one). */
        x->err_code[0] = 0;
        x->err_msg[0] = 0;
        x->range_start = -1;
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon)
        return n;
    size_t kn = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vn = n - kn - 1;
    while (vn && (*v == ' ' || *v == '\t')) {
        v++;
        vn--;
    }
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n' || v[vn - 1] == ' '))
        vn--;
    char *dst = NULL;
    size_t cap = 0;
    if (kn == 12 && strncasecmp(buf, "X-Error-Code", kn) == 0) {
        dst = x->err_code;
        cap = sizeof x->err_code;
    } else if (kn == 15 && strncasecmp(buf, "X-Error-Message", kn) == 0) {
        dst = x->err_msg;
        cap = sizeof x->err_msg;
    } else if (kn == 13 && strncasecmp(buf, "Content-Range", kn) == 0) {
        char tmp[128];
        size_t m = vn < sizeof tmp - 1 ? vn : sizeof tmp - 1;
        memcpy(tmp, v, m);
        tmp[m] = 0;
        long long s = -1;
        if (sscanf(tmp, "bytes %lld-", &s) == 1)
            x->range_start = s;
        return n;
    }
    if (dst) {
        size_t m = vn < cap - 1 ? vn : cap - 1;
        for (size_t i = 0; i < m; i++)
            dst[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? ' ' : v[i];
        dst[m] = 0;
    }
    return n;
}

static int write_all(int fd, const char *b, size_t n)
{
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    long code = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
    x->status = code;
    if (x->fd >= 0 && (code == 200 || code == 206)) {
        if (x->written == 0 && x->offset > 0) {
            if (code == 200) {
                /* The server ignored our Range: start the file over. */
                if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0) {
                    x->write_errno = errno;
                    return 0;
                }
                x->offset = 0;
                x->p->file_base = 0;
            } else if (x->range_start != x->offset) {
                x->bad_range = 1;
                return 0;
            }
        }
        if (write_all(x->fd, buf, n) != 0) {
            x->write_errno = errno ? errno : EIO;
            return 0;
        }
        x->written += (int64_t)n;
        return n;
    }
    /* The listing, or an error page (kept short, for the message). */
    size_t cap = (x->fd >= 0 || code >= 300) ? ERR_BODY_MAX : x->mem_cap;
    if (x->mem_len + n > cap) {
        if (code >= 300)
            n = cap > x->mem_len ? cap - x->mem_len : 0;
        else {
            x->too_big = 1;
            return 0;
        }
    }
    if (n) {
        char *m = realloc(x->mem, x->mem_len + n + 1);
        if (!m)
            return 0;
        x->mem = m;
        memcpy(x->mem + x->mem_len, buf, n);
        x->mem_len += n;
        x->mem[x->mem_len] = 0;
    }
    return size * nmemb;
}

static CURLcode perform(pull *p, const char *url, xfer *x, int is_api)
{
    CURL *c = p->curl;
    curl_easy_reset(c);
    x->p = p;
    x->curl = c;
    x->range_start = -1;
    x->errbuf[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
    char ua[64];
    snprintf(ua, sizeof ua, "medembed/%s", medembed_version());
    curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, p->o->connect_timeout);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, p->o->stall_timeout);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    if (p->headers)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, p->headers);
    if (is_api)
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    char range[64];
    if (x->fd >= 0 && x->offset > 0) {
        snprintf(range, sizeof range, "%lld-", (long long)x->offset);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    x->status = code;
    return rc;
}

enum { XF_OK, XF_RETRY, XF_NETWORK, XF_FATAL };

/* Describes a failed transfer of `what` in one line (printed unless it is
 * going to be retried, in which case it goes into msg) and classifies it. */
static int classify(pull *p, xfer *x, CURLcode rc, const char *what, int is_api, char *msg,
                    size_t msg_len)
{
    const hub_opts *o = p->o;
    const char *e = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    char hub_says[300] = "";
    if (x->err_msg[0])
        snprintf(hub_says, sizeof hub_says, " (the hub says: %s)", x->err_msg);
    switch (rc) {
    case CURLE_OK:
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        snprintf(msg, msg_len, "cannot reach %s: %s (offline?)", o->endpoint, e);
        return XF_NETWORK;
    case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t ct = 0;
        curl_easy_getinfo(x->curl, CURLINFO_CONNECT_TIME_T, &ct);
        if (ct == 0) {
            snprintf(msg, msg_len,
                     "cannot reach %s: no connection within %ld s (MEDEMBED_CONNECT_TIMEOUT)",
                     o->endpoint, o->connect_timeout);
            return XF_NETWORK;
        }
        snprintf(msg, msg_len, "%s: the server sent no data for %ld s (MEDEMBED_STALL_TIMEOUT)",
                 what, o->stall_timeout);
        return XF_RETRY;
    }
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        snprintf(msg, msg_len, "%s: the connection broke after %lld bytes: %s", what,
                 (long long)(x->offset + x->written), e);
        return XF_RETRY;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        snprintf(msg, msg_len,
                 "TLS failure talking to %s: %s (is the ca-certificates package installed?)",
                 o->endpoint, e);
        return XF_FATAL;
    case CURLE_WRITE_ERROR:
        if (x->write_errno)
            snprintf(msg, msg_len, "%s: cannot write the download: %s", what,
                     strerror(x->write_errno));
        else if (x->too_big)
            snprintf(msg, msg_len, "%s: the hub's answer is over %zu bytes", what, x->mem_cap);
        else if (x->bad_range)
            snprintf(msg, msg_len, "%s: the server answered a different byte range than asked",
                     what);
        else
            snprintf(msg, msg_len, "%s: write failed (out of memory?)", what);
        return XF_FATAL;
    case CURLE_TOO_MANY_REDIRECTS:
        snprintf(msg, msg_len, "%s: too many redirects from %s", what, o->endpoint);
        return XF_FATAL;
    default:
        snprintf(msg, msg_len, "%s: %s", what, e);
        return XF_FATAL;
    }
    long s = x->status;
    if (s >= 200 && s < 300)
        return XF_OK;
    if (s == 401) {
        if (o->token[0])
            snprintf(msg, msg_len,
                     "%s: the hub refused HF_TOKEN (HTTP 401): the token is invalid or expired, "
                     "or the repo does not exist%s",
                     p->ref, hub_says);
        else
            snprintf(msg, msg_len,
                     "%s: the hub refused access (HTTP 401): the repo is gated or private, or it "
                     "does not exist; if you have access, set HF_TOKEN to a read token%s",
                     p->ref, hub_says);
        return XF_FATAL;
    }
    if (s == 403) {
        snprintf(msg, msg_len,
                 "%s: access denied (HTTP 403): the repo is gated; accept its terms at %s/%s "
                 "with the account HF_TOKEN belongs to%s",
                 p->ref, o->endpoint, p->repo, hub_says);
        return XF_FATAL;
    }
    if (s == 404) {
        if (strcmp(x->err_code, "RevisionNotFound") == 0)
            snprintf(msg, msg_len, "%s: revision \"%s\" not found on %s (HTTP 404)%s", p->ref,
                     p->rev, o->endpoint, hub_says);
        else if (!is_api)
            snprintf(msg, msg_len, "%s: not found on %s (HTTP 404) although the listing has it%s",
                     what, o->endpoint, hub_says);
        else
            snprintf(msg, msg_len,
                     "%s: repo not found on %s (HTTP 404): check the repo id and revision%s",
                     p->ref, o->endpoint, hub_says);
        return XF_FATAL;
    }
    if (s == 429 || s >= 500) {
        snprintf(msg, msg_len, "%s: the hub answered HTTP %ld%s%s", what, s,
                 s == 429 ? " (rate limited)" : " (server error)", hub_says);
        return XF_RETRY;
    }
    snprintf(msg, msg_len, "%s: unexpected HTTP %ld from %s%s", what, s, o->endpoint, hub_says);
    return XF_FATAL;
}

static void backoff(long attempt)
{
    double d = 0.5;
    for (long i = 0; i < attempt && d < 8; i++)
        d *= 2;
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------------- pull */

static int fail_with(pull *p, int cls, const char *msg, const char *dest)
{
    clear_progress(p);
    cli_error("%s", msg);
    if (cls == XF_NETWORK) {
        hub_print_offline_hint(p->repo, p->rev, dest);
        return HUB_PULL_NETWORK;
    }
    return HUB_PULL_ERROR;
}

static int fetch_listing(pull *p, hub_listing *l, const char *dest)
{
    const hub_opts *o = p->o;
    const char *rev = p->rev[0] ? p->rev : ME_HUB_DEFAULT_REVISION;
    char *erev = curl_easy_escape(p->curl, rev, 0);
    char url[4096];
    int w = snprintf(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", o->endpoint,
                     p->repo, erev ? erev : "");
    curl_free(erev);
    if (w < 0 || (size_t)w >= sizeof url) {
        cli_error("the listing URL for %s is too long", p->ref);
        return HUB_PULL_ERROR;
    }
    char msg[1024];
    for (long attempt = 0;; attempt++) {
        xfer x;
        memset(&x, 0, sizeof x);
        x.fd = -1;
        x.mem_cap = HUB_LISTING_MAX;
        CURLcode rc = perform(p, url, &x, 1);
        int cls = classify(p, &x, rc, p->ref, 1, msg, sizeof msg);
        if (cls == XF_OK) {
            char err[512];
            int prc = hub_listing_parse(x.mem ? x.mem : "", x.mem_len, l, err, sizeof err);
            free(x.mem);
            if (prc != 0) {
                cli_error("%s: %s", p->ref, err);
                return HUB_PULL_ERROR;
            }
            return HUB_PULL_OK;
        }
        free(x.mem);
        if (cls != XF_RETRY || attempt >= o->retries)
            return fail_with(p, cls, msg, dest);
        cli_warn("%s; retrying (%ld of %ld)", msg, attempt + 1, o->retries);
        backoff(attempt);
    }
}

static int build_file_url(pull *p, const char *commit, const char *name, char *url, size_t n)
{
    int w = snprintf(url, n, "%s/%s/resolve/", p->o->endpoint, p->repo);
    if (w < 0 || (size_t)w >= n)
        return -1;
    size_t k = (size_t)w;
    char *erev = curl_easy_escape(p->curl, commit, 0);
    w = snprintf(url + k, n - k, "%s", erev ? erev : "");
    curl_free(erev);
    if (w < 0 || (size_t)w >= n - k)
        return -1;
    k += (size_t)w;
    const char *s = name;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t sl = e ? (size_t)(e - s) : strlen(s);
        char *es = curl_easy_escape(p->curl, s, (int)sl);
        w = snprintf(url + k, n - k, "/%s", es ? es : "");
        curl_free(es);
        if (!es || w < 0 || (size_t)w >= n - k)
            return -1;
        k += (size_t)w;
        s = e ? e + 1 : s + sl;
    }
    return 0;
}

/* Downloads one file into staging/NAME (via NAME.incomplete), resuming and
 * checking as the file comment says. */
static int fetch_file(pull *p, const hub_file *f, const char *staging, const char *commit,
                      const char *dest)
{
    const hub_opts *o = p->o;
    char final[4096], tmp[4200], url[8192], msg[1024], err[512];
    if (snprintf(final, sizeof final, "%s/%s", staging, f->name) >= (int)sizeof final ||
        snprintf(tmp, sizeof tmp, "%s.incomplete", final) >= (int)sizeof tmp ||
        build_file_url(p, commit, f->name, url, sizeof url) != 0) {
        cli_error("%s: path too long", f->name);
        return HUB_PULL_ERROR;
    }
    int64_t have = file_size(final);
    if (have >= 0 && (f->size < 0 || have == f->size))
        return HUB_PULL_OK; /* verified and renamed by an earlier, interrupted pull */
    const char *slash = strrchr(final, '/');
    if (slash && slash > final + strlen(staging)) {
        char sub[4096];
        memcpy(sub, final, (size_t)(slash - final));
        sub[slash - final] = 0;
        if (mkdir_p(sub) != 0) {
            cli_error("%s: cannot create folder: %s", sub, strerror(errno));
            return HUB_PULL_ERROR;
        }
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        clear_progress(p);
        cli_error("%s: cannot create: %s", tmp, strerror(errno));
        return HUB_PULL_ERROR;
    }
    struct stat st;
    have = fstat(fd, &st) == 0 ? (int64_t)st.st_size : 0;
    /* Resume only what can be checked: a known size, fewer bytes than it. */
    if (have > 0 && (f->size < 0 || have > f->size)) {
        if (ftruncate(fd, 0) != 0) {
            close(fd);
            cli_error("%s: cannot truncate: %s", tmp, strerror(errno));
            return HUB_PULL_ERROR;
        }
        have = 0;
    }
    int rc = HUB_PULL_OK;
    for (long attempt = 0;; attempt++) {
        if (f->size >= 0 && have == f->size)
            break; /* all bytes already here: just check them */
        if (lseek(fd, (off_t)have, SEEK_SET) < 0) {
            cli_error("%s: cannot seek: %s", tmp, strerror(errno));
            rc = HUB_PULL_ERROR;
            break;
        }
        xfer x;
        memset(&x, 0, sizeof x);
        x.fd = fd;
        x.offset = have;
        p->file_base = have;
        p->file_name = f->name;
        CURLcode crc = perform(p, url, &x, 0);
        have = x.offset + x.written;
        free(x.mem);
        int cls = classify(p, &x, crc, f->name, 0, msg, sizeof msg);
        if (crc == CURLE_OK && x.status == 416) {
            /* The bytes we hold do not fit the file the server has: start over. */
            if (ftruncate(fd, 0) != 0) {
                cli_error("%s: cannot truncate: %s", tmp, strerror(errno));
                rc = HUB_PULL_ERROR;
                break;
            }
            have = 0;
            snprintf(msg, sizeof msg, "%s: the server refused to resume (HTTP 416)", f->name);
            cls = XF_RETRY;
        }
        if (cls == XF_OK && f->size >= 0 && have < f->size) {
            snprintf(msg, sizeof msg, "%s: the download ended at %lld of %lld bytes", f->name,
                     (long long)have, (long long)f->size);
            cls = XF_RETRY;
        }
        if (cls == XF_OK)
            break;
        if (cls != XF_RETRY || attempt >= o->retries) {
            rc = fail_with(p, cls, msg, dest);
            if (cls == XF_RETRY || cls == XF_NETWORK)
                fprintf(stderr, "  %lld bytes of %s are kept; run the same command again to "
                                "resume.\n",
                        (long long)have, f->name);
            break;
        }
        clear_progress(p);
        cli_warn("%s; resuming at byte %lld (retry %ld of %ld)", msg, (long long)have,
                 attempt + 1, o->retries);
        backoff(attempt);
    }
    if (rc == HUB_PULL_OK && fsync(fd) != 0) {
        cli_error("%s: fsync failed: %s", tmp, strerror(errno));
        rc = HUB_PULL_ERROR;
    }
    close(fd);
    if (rc != HUB_PULL_OK)
        return rc;
    draw_progress(p, have, 1);
    if (f->size >= 0 && have != f->size) {
        clear_progress(p);
        cli_error("%s: got %lld bytes but the hub lists %lld; deleted the download", f->name,
                  (long long)have, (long long)f->size);
        unlink(tmp);
        return HUB_PULL_ERROR;
    }
    if (f->sha256[0]) {
        if (p->o->progress) {
            /* ~100 MB/s with the portable SHA-256: seconds for a base model. */
            fprintf(stderr, "\r\033[K[%zu/%zu] checking the sha256 of %s", p->file_i + 1,
                    p->n_files, f->name);
            fflush(stderr);
            p->drew = 1;
        }
        char hex[65];
        int hrc = me_sha256_file(tmp, hex, err, sizeof err);
        if (hrc != MEDEMBED_OK) {
            clear_progress(p);
            cli_error("%s", err);
            return HUB_PULL_ERROR;
        }
        if (strcmp(hex, f->sha256) != 0) {
            clear_progress(p);
            unlink(tmp);
            cli_error("%s: sha256 mismatch: the download hashes to %s but the hub publishes %s; "
                      "deleted it (run the pull again; if it repeats, the hub or a proxy is "
                      "serving corrupt data)",
                      f->name, hex, f->sha256);
            return HUB_PULL_ERROR;
        }
    }
    if (rename(tmp, final) != 0) {
        clear_progress(p);
        cli_error("%s: cannot rename into place: %s", final, strerror(errno));
        return HUB_PULL_ERROR;
    }
    return HUB_PULL_OK;
}

static int write_json_atomic(const char *dir, const char *name, json_t *j)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (json_dump_file(j, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
        return -1;
    fsync_path(tmp);
    return rename(tmp, path);
}

static int write_manifest(pull *p, const hub_listing *l, const char *staging)
{
    time_t t = time(NULL);
    struct tm tm;
    char when[32] = "";
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *files = json_array();
    for (size_t i = 0; i < l->n_files; i++) {
        json_t *f = json_pack("{s:s, s:I}", "name", l->files[i].name, "size",
                              (json_int_t)l->files[i].size);
        if (f && l->files[i].sha256[0])
            json_object_set_new(f, "sha256", json_string(l->files[i].sha256));
        json_array_append_new(files, f);
    }
    json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "repo", p->repo, "revision",
                          p->rev[0] ? p->rev : ME_HUB_DEFAULT_REVISION, "commit", l->commit,
                          "endpoint", p->o->endpoint, "pulled_at", when, "files", files);
    int rc = m ? write_json_atomic(staging, HUB_MANIFEST, m) : -1;
    json_decref(m);
    return rc;
}

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int empty = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    }
    closedir(d);
    return empty;
}

/* What an existing dest holds: 1 if it has our manifest (commit gets its
 * commit, or "" if unreadable), 0 if not. */
static int dest_state(const char *dest, char commit[41])
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dest, HUB_MANIFEST);
    commit[0] = 0;
    size_t len = 0;
    char *j = read_small(path, 1u << 20, &len);
    if (!j)
        return 0;
    if (hub_manifest_commit(j, len, commit) != 0)
        commit[0] = 0;
    free(j);
    return 1;
}

/* Prepares the staging folder: a leftover from a pull of the same commit is
 * resumed; anything else is cleared. Returns bytes already there, or -1. */
static int64_t prepare_staging(const char *staging, const hub_listing *l, int *resumed)
{
    char state[4200];
    snprintf(state, sizeof state, "%s/%s", staging, STAGE_STATE);
    size_t len = 0;
    char *old = read_small(state, 256, &len);
    int same = old && strcmp(old, l->commit) == 0;
    free(old);
    if (!same && rm_tree(staging) != 0)
        return -1;
    if (mkdir_p(staging) != 0)
        return -1;
    if (!same) {
        FILE *f = fopen(state, "wb");
        if (!f || fputs(l->commit, f) < 0 || fclose(f) != 0)
            return -1;
    }
    int64_t here = 0;
    for (size_t i = 0; i < l->n_files && same; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", staging, l->files[i].name);
        int64_t s = file_size(path);
        if (s < 0) {
            strncat(path, ".incomplete", sizeof path - strlen(path) - 1);
            s = file_size(path);
        }
        if (s > 0 && (l->files[i].size < 0 || s <= l->files[i].size))
            here += s;
    }
    *resumed = same && here > 0;
    return here;
}

/* Puts the finished staging folder at dest. */
static int swap_in(const char *staging, const char *dest, const char *old, int dest_exists)
{
    if (!dest_exists)
        return rename(staging, dest);
    if (renameat2(AT_FDCWD, staging, AT_FDCWD, dest, RENAME_EXCHANGE) == 0) {
        rm_tree(staging); /* the old snapshot now sits at staging */
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* No atomic exchange on this filesystem: two renames, briefly no dest. */
    if (rm_tree(old) != 0 || rename(dest, old) != 0)
        return -1;
    if (rename(staging, dest) != 0) {
        int e = errno;
        (void)rename(old, dest);
        errno = e;
        return -1;
    }
    rm_tree(old);
    return 0;
}

static int is_hex40(const char *s)
{
    if (strlen(s) != 40)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

/* What is at dest now: -1 error (printed), 0 nothing, 1 a folder we may
 * fill or replace (have_commit: the commit of an earlier pull, or ""). */
static int check_dest(const char *dest, char have_commit[41])
{
    struct stat st;
    have_commit[0] = 0;
    if (lstat(dest, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode)) {
        cli_error("%s exists and is not a folder", dest);
        return -1;
    }
    if (!dest_state(dest, have_commit) && !dir_is_empty(dest)) {
        cli_error("%s already holds files that medembed pull did not put there; remove it or "
                  "choose another --dir",
                  dest);
        return -1;
    }
    return 1;
}

/* Takes an exclusive flock on the parent folder, so two processes pulling
 * into it (say, two `embed` runs that both auto-pull the default model) do
 * not download twice; the lock dies with the process. Returns the fd. */
static int lock_parent(const char *parent)
{
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        cli_error("%s: cannot open: %s", parent, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "medembed: waiting for another medembed pull into %s\n", parent);
        while (flock(fd, LOCK_EX) != 0 && errno == EINTR)
            ;
    }
    return fd;
}

/* Nothing is created on disk until the listing has been fetched and
 * accepted, so a 404, a 401, a dead or a stalled hub leave no trace. */
static int pull_run(pull *p, const char *dest, const char *parent, const char *base,
                    int if_missing)
{
    const hub_opts *o = p->o;
    char have_commit[41];
    int dest_exists = check_dest(dest, have_commit);
    if (dest_exists < 0)
        return HUB_PULL_ERROR;
    if (dest_exists && if_missing)
        return HUB_PULL_OK;
    if (dest_exists && have_commit[0] && is_hex40(p->rev) && strcmp(have_commit, p->rev) == 0) {
        if (!o->quiet)
            fprintf(stderr, "medembed: %s is up to date in %s\n", p->ref, dest);
        return HUB_PULL_OK;
    }
    hub_listing l;
    int rc = fetch_listing(p, &l, dest);
    if (rc != HUB_PULL_OK)
        return rc;
    if (mkdir_p(parent) != 0) {
        cli_error("%s: cannot create folder: %s", parent, strerror(errno));
        hub_listing_free(&l);
        return HUB_PULL_ERROR;
    }
    p->lock_fd = lock_parent(parent);
    if (p->lock_fd < 0) {
        hub_listing_free(&l);
        return HUB_PULL_ERROR;
    }
    /* Look again: another process may have finished this pull meanwhile. */
    dest_exists = check_dest(dest, have_commit);
    if (dest_exists < 0 || (dest_exists && if_missing)) {
        hub_listing_free(&l);
        return dest_exists < 0 ? HUB_PULL_ERROR : HUB_PULL_OK;
    }
    if (dest_exists && have_commit[0] && strcmp(have_commit, l.commit) == 0) {
        if (!o->quiet)
            fprintf(stderr, "medembed: %s is up to date (commit %.12s) in %s\n", p->ref,
                    have_commit, dest);
        hub_listing_free(&l);
        return HUB_PULL_OK;
    }
    char staging[4200], old[4200];
    snprintf(staging, sizeof staging, "%s/.%s.partial", parent, base);
    snprintf(old, sizeof old, "%s/.%s.old", parent, base);
    int resumed = 0;
    int64_t here = prepare_staging(staging, &l, &resumed);
    if (here < 0) {
        cli_error("%s: cannot prepare the download folder: %s", staging, strerror(errno));
        hub_listing_free(&l);
        return HUB_PULL_ERROR;
    }
    struct statvfs vfs;
    int64_t need = l.total - here;
    if (statvfs(parent, &vfs) == 0 && need > 0 &&
        (double)vfs.f_bavail * (double)vfs.f_frsize < (double)need) {
        char a[32], b[32];
        cli_human_bytes(a, sizeof a, need);
        cli_human_bytes(b, sizeof b, (int64_t)((double)vfs.f_bavail * (double)vfs.f_frsize));
        cli_error("%s needs %s but only %s is free on %s", p->ref, a, b, parent);
        hub_listing_free(&l);
        return HUB_PULL_ERROR;
    }
    char total[32];
    cli_human_bytes(total, sizeof total, l.total);
    if (!o->quiet) {
        fprintf(stderr, "medembed: pulling %s (commit %.12s): %zu files, %s, into %s\n", p->ref,
                l.commit[0] ? l.commit : "unknown", l.n_files, total, dest);
        if (resumed) {
            char h[32];
            cli_human_bytes(h, sizeof h, here);
            fprintf(stderr, "medembed: resuming an interrupted pull (%s already here)\n", h);
        }
    }
    const char *commit = l.commit[0] ? l.commit : (p->rev[0] ? p->rev : ME_HUB_DEFAULT_REVISION);
    p->total_bytes = l.total;
    p->n_files = l.n_files;
    p->t0 = cli_now_s();
    p->t0_bytes = 0;
    for (size_t i = 0; i < l.n_files && rc == HUB_PULL_OK; i++) {
        p->file_i = i;
        p->file_name = l.files[i].name;
        rc = fetch_file(p, &l.files[i], staging, commit, dest);
        if (l.files[i].size > 0)
            p->done_bytes += l.files[i].size;
    }
    clear_progress(p);
    if (rc == HUB_PULL_OK) {
        char state[4300];
        snprintf(state, sizeof state, "%s/%s", staging, STAGE_STATE);
        if (write_manifest(p, &l, staging) != 0 || (unlink(state) != 0 && errno != ENOENT)) {
            cli_error("%s: cannot write %s: %s", staging, HUB_MANIFEST, strerror(errno));
            rc = HUB_PULL_ERROR;
        }
    }
    if (rc == HUB_PULL_OK) {
        fsync_path(staging);
        if (swap_in(staging, dest, old, dest_exists) != 0) {
            cli_error("cannot move %s to %s: %s", staging, dest, strerror(errno));
            rc = HUB_PULL_ERROR;
        } else {
            fsync_path(parent);
            if (!o->quiet)
                fprintf(stderr, "medembed: pulled %s (%zu files, %s) into %s\n", p->ref,
                        l.n_files, total, dest);
        }
    }
    hub_listing_free(&l);
    return rc;
}

int hub_pull(const hub_opts *o, const char *repo, const char *rev, const char *dest,
             int if_missing)
{
    char parent[4096];
    const char *base = NULL;
    if (split_path(dest, parent, sizeof parent, &base) != 0 || strcmp(base, ".") == 0 ||
        strcmp(base, "..") == 0) {
        cli_error("\"%s\" cannot be a model folder (give a path that ends in a folder name)",
                  dest);
        return HUB_PULL_ERROR;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cli_error("cannot initialise libcurl");
        return HUB_PULL_ERROR;
    }
    pull p;
    memset(&p, 0, sizeof p);
    p.o = o;
    p.repo = repo;
    p.rev = rev ? rev : "";
    p.lock_fd = -1;
    int pinned = p.rev[0] && strcmp(p.rev, ME_HUB_DEFAULT_REVISION) != 0;
    snprintf(p.ref, sizeof p.ref, "%s%s%s", repo, pinned ? "@" : "", pinned ? p.rev : "");
    p.curl = curl_easy_init();
    int rc = HUB_PULL_ERROR;
    if (!p.curl) {
        cli_error("cannot initialise libcurl");
    } else {
        if (o->token[0]) {
            char h[1100];
            snprintf(h, sizeof h, "Authorization: Bearer %s", o->token);
            p.headers = curl_slist_append(NULL, h);
        }
        rc = pull_run(&p, dest, parent, base, if_missing);
    }
    curl_slist_free_all(p.headers);
    curl_easy_cleanup(p.curl);
    curl_global_cleanup();
    if (p.lock_fd >= 0)
        close(p.lock_fd);
    return rc;
}
