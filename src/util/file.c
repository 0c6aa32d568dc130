/* file.c - bounded file reads and mmaps; every failure names the path. */
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int me_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int me_dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int me_path_join(char *out, size_t n, const char *dir, const char *name)
{
    int w = snprintf(out, n, "%s/%s", dir, name);
    return (w < 0 || (size_t)w >= n) ? -1 : 0;
}

int me_file_read(const char *path, size_t max_bytes, char **out, size_t *len, me_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int st = (errno == ENOENT) ? MEDEMBED_ERR_NOT_FOUND : MEDEMBED_ERR_IO;
        return me_err_set(e, st, "%s: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return me_err_set(e, MEDEMBED_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > max_bytes) {
        close(fd);
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: %lld bytes is over the %zu-byte limit",
                          path, (long long)sb.st_size, max_bytes);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return me_err_set(e, MEDEMBED_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return me_err_set(e, MEDEMBED_ERR_IO, "%s: read failed: %s", path,
                              r < 0 ? strerror(errno) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (len)
        *len = n;
    return MEDEMBED_OK;
}

int me_map_open(const char *path, me_map *m, me_err *e)
{
    m->data = NULL;
    m->len = 0;
    m->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int st = (errno == ENOENT) ? MEDEMBED_ERR_NOT_FOUND : MEDEMBED_ERR_IO;
        return me_err_set(e, st, "%s: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return me_err_set(e, MEDEMBED_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: file is empty", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        int err = errno;
        close(fd);
        return me_err_set(e, MEDEMBED_ERR_IO, "%s: mmap failed: %s", path, strerror(err));
    }
    m->data = p;
    m->len = (size_t)sb.st_size;
    m->fd = fd;
    return MEDEMBED_OK;
}

int me_map_read(const me_map *m, const void *p, size_t n, void *dst)
{
    uintptr_t a = (uintptr_t)p, base = (uintptr_t)m->data;
    if (!m->data || m->fd < 0 || a < base || a - base > m->len || n > m->len - (a - base))
        return -1;
    off_t off = (off_t)(a - base);
    uint8_t *d = dst;
    while (n > 0) {
        ssize_t r = pread(m->fd, d, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        d += r;
        off += r;
        n -= (size_t)r;
    }
    return 0;
}

void me_map_close(me_map *m)
{
    if (m && m->data) {
        munmap(m->data, m->len);
        if (m->fd >= 0)
            close(m->fd);
        m->data = NULL;
        m->len = 0;
        m->fd = -1;
    }
}
