/*
 * file.h - whole-file reads with a size cap, read-only mmaps, and path joins.
 */
#ifndef ME_FILE_H
#define ME_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* Reads path into a malloc'd NUL-terminated buffer. Files over max_bytes are
 * MEDEMBED_ERR_FORMAT; a missing file is MEDEMBED_ERR_NOT_FOUND. */
int me_file_read(const char *path, size_t max_bytes, char **out, size_t *len, me_err *e);

/* 1 if path exists and is a regular file / a directory. */
int me_file_exists(const char *path);
int me_dir_exists(const char *path);

/* Read-only private mapping of a whole file. Made by me_map_open only; a
 * zeroed me_map (data NULL) is empty, and me_map_close leaves its fd alone. */
typedef struct me_map {
    uint8_t *data;
    size_t len;
    int fd; /* kept open for me_map_read while data is mapped; -1 when none */
} me_map;

int me_map_open(const char *path, me_map *m, me_err *e);
void me_map_close(me_map *m);

/* Copies the n mapped bytes at p (inside m) to dst with pread, without
 * touching the mapping's pages. Returns 0, or -1 (p outside the mapping, no
 * descriptor, a read error, or a file now shorter than the mapping: the
 * caller reads the mapping instead). Safe from several threads at once
 * (pread has no shared file offset). */
int me_map_read(const me_map *m, const void *p, size_t n, void *dst);

/* snprintf(out, n, "%s/%s", dir, name); returns -1 if it would not fit. */
int me_path_join(char *out, size_t n, const char *dir, const char *name);

#endif
