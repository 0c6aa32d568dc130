/*
 * shards.h - `medembed embed --format npy --shard-size N -o NAME.npy`: the
 * output is split into NAME-00000.npy, NAME-00001.npy, ... of N rows each
 * (the last may hold fewer), each with its ids in NAME-00000.ids.json (a
 * JSON array: the records' _id/id, else their 0-based input index), and a
 * manifest NAME.manifest.json:
 *   {"format": "medembed-shards/1", "dim": D, "shard_size": N,
 *    "rows": R, "complete": true|false,
 *    "shards": [{"file": "NAME-00000.npy", "ids": "NAME-00000.ids.json",
 *                "rows": N}, ...]}
 * A shard is written under a temporary name and renamed, then the manifest
 * is replaced (also by rename), so after a kill the manifest lists only
 * whole shards; --resume continues with the next one. Memory stays that of
 * one batch: rows and ids stream to the open shard.
 */
#ifndef MEDEMBED_CLI_SHARDS_H
#define MEDEMBED_CLI_SHARDS_H

#include <stdint.h>
#include <stdio.h>

#include "cli.h"

typedef struct cli_shards {
    char *base;        /* output path without ".npy" */
    const char *label; /* the output path, for messages */
    long size;         /* rows per shard */
    int32_t dim;
    int64_t n_shards;  /* committed shards */
    int64_t rows;      /* rows in committed shards */
    char *last_id;     /* id of the last committed row (resume check), or NULL */
    void *list;        /* json_t array of committed shard entries */
    /* the open shard */
    FILE *f, *ids;
    cli_npy npy;
    int64_t open_rows;
    int complete; /* resume found a finished run */
} cli_shards;

/* Starts a sharded output at path (NAME or NAME.npy). resume: reads NAME's
 * manifest (if any) and keeps its shards: s->rows of the input are done,
 * the last of them with id s->last_id. Returns 0, or 1/2 after an error. */
int cli_shards_open(cli_shards *s, const char *path, long size, int32_t dim, int resume);
/* Appends n rows (recs give their ids; first_index is the input index of
 * the first row), committing every shard that fills. 0 or -1 (printed). */
int cli_shards_rows(cli_shards *s, const float *rows, const cli_record *recs, int64_t first_index,
                    int32_t n);
/* Commits the last, partial shard and marks the manifest complete. */
int cli_shards_close(cli_shards *s);
/* Frees everything (after close, or on error: the open shard is dropped). */
void cli_shards_free(cli_shards *s);

#endif
