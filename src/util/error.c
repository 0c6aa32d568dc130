/* error.c - me_err formatting and the public status table. */
#include "util/error.h"

#include <stdio.h>
#include <string.h>

int me_err_set(me_err *e, int status, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

int me_err_buf(char *err, size_t err_len, int status, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return status;
}

int me_err_prefix(me_err *e, int status, const char *fmt, ...)
{
    if (e) {
        char old[ME_ERR_MAX];
        char pre[ME_ERR_MAX];
        memcpy(old, e->msg, sizeof old);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(pre, sizeof pre, fmt, ap);
        va_end(ap);
        snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old);
    }
    return status;
}

const char *medembed_status_str(int status)
{
    switch (status) {
#define ME_X_CASE(name, value, desc)                                                               \
    case value:                                                                                    \
        return desc;
        MEDEMBED_STATUS_LIST(ME_X_CASE)
#undef ME_X_CASE
    default:
        return "unknown status";
    }
}

const char *medembed_version(void)
{
#define ME_STR2(x) #x
#define ME_STR(x) ME_STR2(x)
    return ME_STR(MEDEMBED_VERSION_MAJOR) "." ME_STR(MEDEMBED_VERSION_MINOR) "." ME_STR(
        MEDEMBED_VERSION_PATCH);
}
