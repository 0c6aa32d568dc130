/*
 * npy.c - the .npy header parser (see npy.h). The header is a Python dict
 * literal: {'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }
 * padded with spaces and a newline. It is parsed as such, key by key, so a
 * 3-D shape, another dtype, Fortran order, an unknown or repeated key, or
 * data of the wrong length is refused instead of misread.
 */
#include "npy.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define NPY_MAX_ROWS ((int64_t)1 << 31)
#define NPY_MAX_COLS 65536

static int fail(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why && n)
        vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return 1;
}

typedef struct cur {
    const char *p, *end;
} cur;

static void skip_ws(cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int eat(cur *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes into out (cap bytes). */
static int quoted(cur *c, char *out, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return 0;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap)
            return 0;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return 0;
    c->p++;
    out[n] = 0;
    return 1;
}

/* A non-negative decimal integer (Python may write 10 or 10L). */
static int integer(cur *c, int64_t *v)
{
    skip_ws(c);
    int64_t x = 0;
    const char *s = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (x > (INT64_MAX - 9) / 10)
            return 0;
        x = x * 10 + (*c->p++ - '0');
    }
    if (c->p == s)
        return 0;
    if (c->p < c->end && *c->p == 'L')
        c->p++;
    *v = x;
    return 1;
}

static int parse_dict(const char *h, size_t len, npy_info *out, char *why, size_t wl)
{
    cur c = {h, h + len};
    int have_descr = 0, have_fo = 0, have_shape = 0;
    int64_t dims[3] = {0, 0, 0};
    int nd = 0;
    if (!eat(&c, '{'))
        return fail(why, wl, "the .npy header is not a dictionary");
    for (;;) {
        if (eat(&c, '}'))
            break;
        char key[32], val[32];
        if (!quoted(&c, key, sizeof key) || !eat(&c, ':'))
            return fail(why, wl, "malformed .npy header");
        if (strcmp(key, "descr") == 0) {
            if (have_descr++)
                return fail(why, wl, "the .npy header repeats 'descr'");
            if (!quoted(&c, val, sizeof val))
                return fail(why, wl, "malformed 'descr' in the .npy header");
            if (strcmp(val, "<f4") != 0)
                return fail(why, wl,
                            "dtype '%s': need little-endian float32 ('<f4'; "
                            "x.astype(np.float32))",
                            val);
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_fo++)
                return fail(why, wl, "the .npy header repeats 'fortran_order'");
            skip_ws(&c);
            size_t r = (size_t)(c.end - c.p);
            if (r >= 5 && memcmp(c.p, "False", 5) == 0) {
                c.p += 5;
            } else if (r >= 4 && memcmp(c.p, "True", 4) == 0) {
                return fail(why, wl,
                            "a Fortran-order array: need C order "
                            "(np.ascontiguousarray(x))");
            } else {
                return fail(why, wl, "malformed 'fortran_order' in the .npy header");
            }
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape++)
                return fail(why, wl, "the .npy header repeats 'shape'");
            if (!eat(&c, '('))
                return fail(why, wl, "malformed 'shape' in the .npy header");
            while (!eat(&c, ')')) {
                int64_t v;
                if (!integer(&c, &v))
                    return fail(why, wl, "malformed 'shape' in the .npy header");
                if (nd < 3)
                    dims[nd] = v;
                nd++;
                if (!eat(&c, ',')) {
                    if (!eat(&c, ')'))
                        return fail(why, wl, "malformed 'shape' in the .npy header");
                    break;
                }
            }
        } else {
            return fail(why, wl, "unknown key '%s' in the .npy header", key);
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}'))
                return fail(why, wl, "malformed .npy header");
            break;
        }
    }
    skip_ws(&c);
    if (c.p != c.end)
        return fail(why, wl, "bytes after the .npy header's dictionary");
    if (!have_descr || !have_fo || !have_shape)
        return fail(why, wl, "the .npy header lacks '%s'",
                    !have_descr ? "descr" : !have_fo ? "fortran_order" : "shape");
    if (nd != 2)
        return fail(why, wl, "a %d-D array: need a 2-D (N, D) array of N vectors", nd);
    if (dims[1] < 1 || dims[1] > NPY_MAX_COLS)
        return fail(why, wl, "D = %lld columns: allowed 1..%d", (long long)dims[1],
                    NPY_MAX_COLS);
    if (dims[0] > NPY_MAX_ROWS)
        return fail(why, wl, "N = %lld rows: at most %lld", (long long)dims[0],
                    (long long)NPY_MAX_ROWS);
    out->rows = dims[0];
    out->cols = (int32_t)dims[1];
    return 0;
}

int npy_parse(const uint8_t *p, size_t avail, uint64_t file_size, npy_info *out, char *why,
              size_t why_len)
{
    memset(out, 0, sizeof *out);
    if (avail > file_size)
        avail = (size_t)file_size;
    if (avail < 10 || memcmp(p, "\x93NUMPY", 6) != 0)
        return fail(why, why_len, "not a .npy file (bad magic)");
    size_t hlen, pre;
    if (p[6] == 1) {
        hlen = (size_t)p[8] | (size_t)p[9] << 8;
        pre = 10;
    } else if (p[6] == 2 || p[6] == 3) {
        if (avail < 12)
            return fail(why, why_len, "truncated .npy header");
        hlen = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24;
        pre = 12;
    } else {
        return fail(why, why_len, "unsupported .npy version %d", p[6]);
    }
    if (hlen > 1 << 16)
        return fail(why, why_len, ".npy header of %zu bytes is too long", hlen);
    if (avail < pre + hlen)
        return fail(why, why_len, "truncated .npy header");
    const char *h = (const char *)p + pre;
    if (memchr(h, 0, hlen))
        return fail(why, why_len, "a NUL byte in the .npy header");
    if (parse_dict(h, hlen, out, why, why_len))
        return 1;
    out->data_offset = pre + hlen;
    uint64_t need = (uint64_t)out->rows * (uint64_t)out->cols * 4;
    uint64_t have = file_size - out->data_offset;
    if (have != need)
        return fail(why, why_len, "%s: the (%lld, %d) float32 array needs %llu data bytes, "
                    "the file holds %llu",
                    have < need ? "truncated" : "trailing bytes", (long long)out->rows,
                    out->cols, (unsigned long long)need, (unsigned long long)have);
    return 0;
}
