/*
 * error.h - internal error reporting (zstd-style RETURN_ERROR_IF).
 *
 * Internal functions return a medembed_status and describe the failure in a
 * caller-owned me_err. The message is one line that names the file, line or
 * tensor, the offending value and what was allowed.
 */
#ifndef ME_ERROR_H
#define ME_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#include "medembed.h"

#define ME_ERR_MAX 512

typedef struct me_err {
    char msg[ME_ERR_MAX];
} me_err;

/* Formats the message into e (if non-NULL) and returns status. */
int me_err_set(me_err *e, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* me_err_set for a caller's buffer (the public API's err, err_len): formats
 * into err[0..err_len) when err is non-NULL and returns status. */
int me_err_buf(char *err, size_t err_len, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefixes an existing message: "prefix: old message". Returns status. */
int me_err_prefix(me_err *e, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define RETURN_ERROR_IF(cond, e, status, ...)                                                      \
    do {                                                                                           \
        if (cond)                                                                                  \
            return me_err_set((e), (status), __VA_ARGS__);                                         \
    } while (0)

#define FORWARD_IF_ERROR(expr)                                                                     \
    do {                                                                                           \
        int me_rc_ = (expr);                                                                       \
        if (me_rc_ != MEDEMBED_OK)                                                                 \
            return me_rc_;                                                                         \
    } while (0)

#endif
