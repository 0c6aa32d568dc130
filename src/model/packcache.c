/*
 * packcache.c - packed weights kept in a file between processes (see
 * packcache.h for when a file is used and its layout).
 */
#include "model/packcache.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model/model.h"
#include "thread/pool.h"
#include "model/checksum.h"
#include "util/sha256.h"

static const char PC_MAGIC[8] = {'M', 'E', 'P', 'A', 'C', 'K', '0', '1'};
#define PC_FIXED 72 /* header bytes before the table */

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t round_up(uint64_t n)
{
    return (n + ME_PC_ALIGN - 1) / ME_PC_ALIGN * ME_PC_ALIGN;
}

static size_t table_end(uint32_t n_blobs)
{
    return PC_FIXED + (size_t)n_blobs * 16;
}

int me_pc_parse(const uint8_t *buf, size_t len, const uint8_t key[32], uint32_t n_blobs,
                me_pc_blob *blobs, char *why, size_t why_len)
{
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(why, why_len, __VA_ARGS__);                                                       \
        return -1;                                                                                 \
    } while (0)
    if (len < PC_FIXED || memcmp(buf, PC_MAGIC, 8) != 0)
        FAIL("not a medembed pack cache file (format MEPACK01)");
    uint32_t n = (uint32_t)buf[8] | (uint32_t)buf[9] << 8 | (uint32_t)buf[10] << 16 |
                 (uint32_t)buf[11] << 24;
    if (n != n_blobs)
        FAIL("holds %u layers, the model has %u", n, n_blobs);
    if (memcmp(buf + 16, key, 32) != 0)
        FAIL("made for other weights, kernels or dtype (key differs)");
    uint64_t file_bytes = get_u64(buf + 48), sum = get_u64(buf + 56);
    uint64_t data_start = get_u64(buf + 64);
    if (file_bytes != len)
        FAIL("is %zu bytes, its header says %llu (truncated or grown)", len,
             (unsigned long long)file_bytes);
    if (len % ME_PC_ALIGN != 0)
        FAIL("is %zu bytes, not a multiple of %u", len, ME_PC_ALIGN);
    if (data_start != round_up(table_end(n)) || data_start > len)
        FAIL("data start %llu is not where the table ends", (unsigned long long)data_start);
    uint64_t at = data_start;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = buf + PC_FIXED + (size_t)i * 16;
        uint64_t off = get_u64(e), bytes = get_u64(e + 8);
        if (off != at || off > len || bytes == 0 || bytes > len - off)
            FAIL("layer %u's entry (offset %llu, %llu bytes) is out of place", i,
                 (unsigned long long)off, (unsigned long long)bytes);
        blobs[i].offset = off;
        blobs[i].bytes = bytes;
        at = round_up(off + bytes);
    }
    if (at != len)
        FAIL("the layers end at %llu, the file at %zu", (unsigned long long)at, len);
    for (size_t i = table_end(n); i < data_start; i++)
        if (buf[i])
            FAIL("the header's padding is not zero");
    if (me_checksum64(buf + data_start, len - data_start) != sum)
        FAIL("checksum mismatch (damaged file)");
    return 0;
#undef FAIL
}

/* ------------------------------------------------------------------------ */

static void put_i64(me_sha256 *h, int64_t v)
{
    uint8_t b[8];
    put_u64(b, (uint64_t)v);
    me_sha256_update(h, b, 8);
}

/* How this build packs, hashed into the key: a small layer with tails in
 * both dimensions and values over 16 binades (and a zero row), packed by
 * the model's level in its dtype; its bytes after the header. Any change
 * to a layout, to bf16 rounding or to int8 quantization changes them, so
 * files from another build of the packers miss without anyone having to
 * remember to bump the tag. */
static void put_probe(me_sha256 *h, const medembed_model *m, int32_t dtype)
{
    enum { PN = 53, PK = 75 };
    float *w = malloc(sizeof *w * PN * PK);
    me_linear L;
    memset(&L, 0, sizeof L);
    L.n_out = PN;
    L.n_in = PK;
    L.w = w;
    uint32_t u = 12345;
    for (int i = 0; w && i < PN * PK; i++) {
        u = u * 1664525u + 1013904223u;
        w[i] = i / PK == 7 ? 0.0f : ((float)(u >> 8) / 16777216.0f - 0.5f) * ldexpf(1.0f, i % 16 - 8);
    }
    int ok = w && m->kern->pack(&L, dtype) == MEDEMBED_OK && L.packed &&
             L.packed_bytes > ME_PACK_HDR;
    put_i64(h, ok ? (int64_t)L.packed_bytes : -1);
    if (ok)
        me_sha256_update(h, (const uint8_t *)L.packed + ME_PACK_HDR, L.packed_bytes - ME_PACK_HDR);
    if (L.packed)
        m->kern->unpack(&L);
    free(w);
}

/* What decides the cache file's bytes (packcache.h), hashed. */
static void pc_key(const medembed_model *m, uint8_t key[32])
{
    me_sha256 h;
    me_sha256_init(&h);
    /* bump with any change to this file's format (the packers' output is
     * covered by put_probe) */
    static const char tag[] = "medembed pack cache 2"; /* 2: int8 keeps QKV in bf16 */
    me_sha256_update(&h, tag, sizeof tag);
    const char *ver = medembed_version();
    me_sha256_update(&h, ver, strlen(ver) + 1);
    const char *isa = me_isa_name(m->kern->isa);
    me_sha256_update(&h, isa, strlen(isa) + 1);
    me_cpu c;
    me_cpu_detect(&c); /* the layouts depend on these (bf16, int8 panels or blocks) */
    put_i64(&h, c.avx512_bf16);
    put_i64(&h, c.avx512_vnni);
    put_i64(&h, c.arm_bf16); /* ARM64: bf16 in the bfmmla layout */
    put_i64(&h, m->dtype);
    for (int32_t d = 0; d <= MEDEMBED_DTYPE_INT8; d++) /* each dtype the layers use */
        for (int64_t t = 0; t < 4; t++)
            if (me_model_linear_dtype(m, t) == d) {
                put_probe(&h, m, d);
                break;
            }
    me_sha256_update(&h, m->files_digest, 32); /* the identity's inputs but the tensor data */
    for (int32_t i = 0; i < m->n_shards; i++) {
        struct stat st;
        memset(&st, 0, sizeof st);
        if (m->shards[i].map.fd >= 0)
            fstat(m->shards[i].map.fd, &st);
        put_i64(&h, (int64_t)st.st_dev);
        put_i64(&h, (int64_t)st.st_ino);
        put_i64(&h, (int64_t)st.st_size);
        put_i64(&h, (int64_t)st.st_mtim.tv_sec);
        put_i64(&h, (int64_t)st.st_mtim.tv_nsec);
        put_i64(&h, (int64_t)st.st_ctim.tv_sec); /* an in-place rewrite that kept the mtime */
        put_i64(&h, (int64_t)st.st_ctim.tv_nsec);
    }
    uint32_t n = (uint32_t)m->cfg.n_layers * 4;
    for (uint32_t i = 0; i < n; i++) {
        const me_linear *L = me_model_linear((medembed_model *)m, i);
        put_i64(&h, L->n_out);
        put_i64(&h, L->n_in);
    }
    me_sha256_final(&h, key);
}

/* The part of a cache file's name that names the model folder: the first
 * 16 hex digits of the SHA-256 of its canonical path. Files of one folder
 * share it, so that a new file can replace the ones it makes stale
 * (pc_prune). */
static void pc_folder_id(const medembed_model *m, char out[17])
{
    char *real = m->dir ? realpath(m->dir, NULL) : NULL;
    const char *d = real ? real : m->dir ? m->dir : "";
    me_sha256 h;
    uint8_t dg[32];
    char hex[65];
    me_sha256_init(&h);
    me_sha256_update(&h, d, strlen(d));
    me_sha256_final(&h, dg);
    me_sha256_hex(dg, hex);
    memcpy(out, hex, 16);
    out[16] = 0;
    free(real);
}

/* dir/FOLDER-KEY-LEVEL-DTYPE.mepack: FOLDER 16 and KEY 32 hex digits;
 * LEVEL the kernel level with "+bf16" / "+vnni" for the CPU features the
 * key holds (they choose layouts: two hosts that share a directory but
 * differ in them keep a file each). */
static int pc_path(const medembed_model *m, const char *dir, const uint8_t key[32], char *out,
                   size_t n)
{
    char hex[65], folder[17];
    me_sha256_hex(key, hex);
    pc_folder_id(m, folder);
    me_cpu c;
    me_cpu_detect(&c);
    int k = snprintf(out, n, "%s/%s-%.32s-%s%s%s-%s.mepack", dir, folder, hex,
                     me_isa_name(m->kern->isa), c.avx512_bf16 || c.arm_bf16 ? "+bf16" : "",
                     c.avx512_vnni ? "+vnni" : "", me_dtype_name(m->dtype));
    return k > 0 && (size_t)k < n ? 0 : -1;
}

static int all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* mkostemp's six characters */
static int tmp_suffix(const char *s)
{
    if (strlen(s) != 6)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

/* A temporary file older than this is a killed writer's (a write takes
 * seconds); a younger one may be another process's write in progress. */
#define PC_TMP_STALE_S 3600

/* After m's file was written: removes from dir the regular files it makes
 * stale, and nothing else: FOLDER-KEY-LEVEL-DTYPE.mepack with m's folder,
 * level (features included) and dtype but another key (weights that
 * changed, another medembed version), and FOLDER-KEY-LEVEL-DTYPE.mepack
 * .tmp.XXXXXX with m's folder, any key, level and dtype, older than
 * PC_TMP_STALE_S (a killed writer's). Returns how many were removed. A
 * process that still maps a removed file keeps its mapping (the data lives
 * until it is unmapped). Two writers with different keys (one loaded before
 * the weights changed) may remove each other's file; the next load then
 * writes it again. */
static int pc_prune(const medembed_model *m, const char *dir)
{
    const char *mine = strrchr(m->pc_path, '/');
    mine = mine ? mine + 1 : m->pc_path;
    const char *tail = mine + 49; /* pc_path's "-LEVEL-DTYPE.mepack" */
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    time_t now = time(NULL);
    static const char TMP[] = ".mepack.tmp.";
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        /* FOLDER- (m's), then KEY (32 hex digits), then '-' */
        if (len < 50 || strncmp(nm, mine, 17) != 0 || !all_hex(nm + 17, 32) || nm[49] != '-' ||
            strcmp(nm, mine) == 0)
            continue;
        const char *t = strstr(nm + 50, TMP);
        int stale_name = strcmp(nm + 49, tail) == 0;
        int tmp_name = t && t > nm + 50 && tmp_suffix(t + sizeof TMP - 1);
        if (!stale_name && !tmp_name)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (tmp_name && now - st.st_mtime <= PC_TMP_STALE_S)
            continue;
        if (unlinkat(dirfd(d), nm, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

static void status(medembed_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void status(medembed_model *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->pc_status, sizeof m->pc_status, fmt, ap);
    va_end(ap);
}

int me_pc_load(medembed_model *m, const char *dir)
{
    if (!m->kern->adopt) {
        status(m, "off: the %s kernels read the weights unpacked or cannot map them",
               me_isa_name(m->kern->isa));
        return 0;
    }
    uint8_t *key = m->pc_digest; /* kept for me_pc_save */
    pc_key(m, key);
    if (pc_path(m, dir, key, m->pc_path, sizeof m->pc_path) != 0) {
        status(m, "off: the cache directory's path is too long");
        m->pc_path[0] = 0;
        return 0;
    }
    int fd = open(m->pc_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) {
        status(m, "miss: %s", errno == ENOENT ? "no file yet" : strerror(errno));
        return 0;
    }
    struct stat st;
    memset(&st, 0, sizeof st);
    uint8_t *p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= PC_FIXED)
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        status(m, "miss: the file is not a readable pack cache (%lld bytes)",
               (long long)st.st_size);
        return 0;
    }
    size_t len = (size_t)st.st_size;
    uint32_t n = (uint32_t)m->cfg.n_layers * 4;
    me_pc_blob *b = malloc(sizeof *b * (n ? n : 1));
    char why[200] = "out of memory";
    int ok = b && me_pc_parse(p, len, key, n, b, why, sizeof why) == 0;
    uint32_t i = 0;
    for (; ok && i < n; i++) {
        int rc = m->kern->adopt(me_model_linear(m, i), me_model_linear_dtype(m, i),
                                p + b[i].offset, (size_t)b[i].bytes);
        if (rc != MEDEMBED_OK) {
            snprintf(why, sizeof why, "layer %u does not have the layout the kernels expect", i);
            ok = 0;
        }
    }
    free(b);
    if (!ok) {
        while (i-- > 0)
            m->kern->unpack(me_model_linear(m, i));
        munmap(p, len);
        status(m, "miss: %s", why);
        return 0;
    }
    m->pc_map = p;
    m->pc_len = len;
    status(m, "hit");
    return 1;
}

static int pwrite_all(int fd, const void *p, size_t n, off_t at)
{
    const uint8_t *c = p;
    while (n) {
        ssize_t k = pwrite(fd, c, n, at);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        c += k;
        n -= (size_t)k;
        at += k;
    }
    return 0;
}

/* mkdir -p for dir (0755); 0 if it exists afterwards. */
static int make_dirs(const char *dir)
{
    char p[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof p)
        return -1;
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++)
        if (p[i] == '/' || p[i] == 0) {
            char c = p[i];
            p[i] = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return -1;
            p[i] = c;
        }
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

void me_pc_save(medembed_model *m, const char *dir)
{
    if (!m->kern->adopt || !m->pc_path[0])
        return;
    char prev[512];
    snprintf(prev, sizeof prev, "%s", m->pc_status);
    uint32_t n = (uint32_t)m->cfg.n_layers * 4;
    for (uint32_t i = 0; i < n; i++) {
        const me_linear *L = me_model_linear(m, i);
        if (!L->packed || L->packed_borrowed || L->packed_bytes <= ME_PACK_HDR) {
            status(m, "%s; not written: layer %u is not packed", prev, i);
            return;
        }
    }
    size_t hlen = table_end(n);
    uint8_t *hdr = calloc(1, hlen);
    char tmp[4200];
    int fd = -1;
    const char *fail = NULL;
    if (!hdr)
        fail = "out of memory";
    else if (make_dirs(dir) != 0)
        fail = "cannot create the directory";
    else if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", m->pc_path) >= (int)sizeof tmp)
        fail = "path too long";
    else if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) /* a unique name: a killed writer's
                                                      leftover never blocks the next */
        fail = strerror(errno);
    else if (fchmod(fd, 0644) != 0) /* mkostemp makes it 0600; readers may be other users */
        fail = strerror(errno);
    uint64_t at = round_up(hlen);
    if (!fail) {
        memcpy(hdr, PC_MAGIC, 8);
        hdr[8] = (uint8_t)n;
        hdr[9] = (uint8_t)(n >> 8);
        hdr[10] = (uint8_t)(n >> 16);
        hdr[11] = (uint8_t)(n >> 24);
        memcpy(hdr + 16, m->pc_digest, 32); /* computed by me_pc_load */
        put_u64(hdr + 64, at);
        for (uint32_t i = 0; i < n; i++) {
            const me_linear *L = me_model_linear(m, i);
            put_u64(hdr + PC_FIXED + (size_t)i * 16, at);
            put_u64(hdr + PC_FIXED + (size_t)i * 16 + 8, L->packed_bytes);
            at = round_up(at + L->packed_bytes);
        }
        put_u64(hdr + 48, at);
        if (ftruncate(fd, (off_t)at) != 0)
            fail = strerror(errno);
        for (uint32_t i = 0; !fail && i < n; i++) {
            const me_linear *L = me_model_linear(m, i);
            /* the level's header holds this process's addresses: the file
             * keeps zeros there (ftruncate's), and adopt rebuilds it */
            if (pwrite_all(fd, (const uint8_t *)L->packed + ME_PACK_HDR,
                           L->packed_bytes - ME_PACK_HDR,
                           (off_t)get_u64(hdr + PC_FIXED + (size_t)i * 16) + ME_PACK_HDR) != 0)
                fail = strerror(errno ? errno : EIO);
        }
    }
    if (!fail) {
        /* the checksum of what the file now holds, read back through the page cache */
        uint8_t *p = mmap(NULL, (size_t)at, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            fail = strerror(errno);
        } else {
            uint64_t start = get_u64(hdr + 64);
            put_u64(hdr + 56, me_checksum64(p + start, (size_t)(at - start)));
            munmap(p, (size_t)at);
            if (pwrite_all(fd, hdr, hlen, 0) != 0)
                fail = strerror(errno ? errno : EIO);
        }
    }
    if (fd >= 0 && close(fd) != 0 && !fail)
        fail = strerror(errno);
    if (!fail && rename(tmp, m->pc_path) != 0)
        fail = strerror(errno);
    if (fail) {
        if (fd >= 0)
            unlink(tmp);
        status(m, "%s; not written: %s", prev, fail);
    } else {
        int gone = pc_prune(m, dir);
        if (gone)
            status(m, "%s; written; removed %d stale file%s", prev, gone, gone == 1 ? "" : "s");
        else
            status(m, "%s; written", prev);
    }
    free(hdr);
}

void me_pc_close(medembed_model *m)
{
    if (m->pc_map)
        munmap(m->pc_map, m->pc_len);
    m->pc_map = NULL;
    m->pc_len = 0;
}
