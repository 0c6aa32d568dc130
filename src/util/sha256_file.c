/*
 * sha256_file.c - me_sha256_file(): SHA-256 of a whole file, with which
 * `medembed pull` checks a downloaded file against the hub's published LFS
 * digest. Not public API: the CLI compiles this file and sha256.c into its
 * own binary (the Makefile's CLI_BORROWED), so they use nothing else of
 * the library.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "medembed.h"
#include "util/sha256.h"

#define BLOCK (1u << 20)

static int fail(char *err, size_t err_len, int status, const char *path, const char *why)
{
    if (err && err_len)
        snprintf(err, err_len, "%s: %s", path, why);
    return status;
}

int me_sha256_file(const char *path, char hex[65], char *err, size_t err_len)
{
    if (!path || !hex)
        return fail(err, err_len, MEDEMBED_ERR_ARG, path ? path : "(null)", "NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, err_len, errno == ENOENT ? MEDEMBED_ERR_NOT_FOUND : MEDEMBED_ERR_IO,
                    path, strerror(errno));
    unsigned char *buf = malloc(BLOCK);
    if (!buf) {
        close(fd);
        return fail(err, err_len, MEDEMBED_ERR_NOMEM, path, "out of memory");
    }
    me_sha256 s;
    me_sha256_init(&s);
    int rc = MEDEMBED_OK;
    for (;;) {
        ssize_t r = read(fd, buf, BLOCK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = fail(err, err_len, MEDEMBED_ERR_IO, path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        me_sha256_update(&s, buf, (size_t)r);
    }
    free(buf);
    close(fd);
    if (rc == MEDEMBED_OK) {
        uint8_t d[32];
        me_sha256_final(&s, d);
        me_sha256_hex(d, hex);
    }
    return rc;
}
