/*
 * hub.h - the Hugging Face hub client behind `medembed pull` and the model
 * cache that lets every `-m` take a repo id.
 *
 * Two halves:
 *   hub_parse.c  pure functions with no I/O (the hub's file listing JSON,
 *                which files the engine needs, our manifest). They see
 *                untrusted bytes, so tests/fuzz/fuzz_hub.c fuzzes them.
 *   hub.c        libcurl transfers, resume, sha256 checks, the atomic
 *                staging-folder swap and the offline hints.
 *
 * What a model name means, where the cache is and the repo id / revision
 * syntax belong to the library (medembed_model_resolve, medembed_cache_dir;
 * src/model/hubref.h, which the CLI compiles in as well): the tool only
 * downloads into the folder the library names. The cache layout, the
 * environment variables and the failure messages are documented for users
 * in docs/PULL.md.
 */
#ifndef MEDEMBED_HUB_H
#define MEDEMBED_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "model/hubref.h" /* me_hub_ref_parse and friends (borrowed from src/) */

#define HUB_DEFAULT_MODEL "abhinand/MedEmbed-base-v0.1"
#define HUB_DEFAULT_ENDPOINT "https://huggingface.co"
/* Written last into a pulled folder; its presence and commit say which
 * snapshot the folder holds. */
#define HUB_MANIFEST ".medembed-pull.json"

/* Limits on what we accept from the hub. */
#define HUB_FILE_NAME_MAX 255
#define HUB_FILES_MAX 512        /* wanted files in one repo (sharded weights) */
#define HUB_LISTING_MAX (64u << 20) /* bytes of listing JSON */

/* ------------------------------------------------------------ hub_parse.c */

/* 1 if the engine needs this repo file: config, safetensors weights (one
 * file or shards + index), tokenizer files, sentence-transformers files
 * (modules.json, N_Name/config.json, ...). Nothing else: no
 * pytorch_model.bin, no onnx/ or openvino/ folders, no README. */
int hub_file_wanted(const char *name);

typedef struct hub_file {
    char *name;      /* repo-relative path, validated (no "..", no leading '/') */
    int64_t size;    /* bytes, or -1 when the hub did not say */
    char sha256[65]; /* LFS files: lowercase hex digest to check; "" otherwise */
} hub_file;

typedef struct hub_listing {
    char commit[41]; /* the snapshot's commit sha ("" if the hub gave none) */
    hub_file *files; /* the wanted files only, in the hub's order */
    size_t n_files;
    int64_t total;   /* sum of known sizes */
} hub_listing;

/* Parses the JSON of GET /api/models/{repo}/revision/{rev}?blobs=true and
 * keeps the files hub_file_wanted() accepts. Fails (-1, message in err) on
 * malformed JSON, unsafe names, or a repo that lacks config.json,
 * safetensors weights or a tokenizer. On failure *out is zeroed. */
int hub_listing_parse(const char *json, size_t len, hub_listing *out, char *err,
                      size_t err_len);
void hub_listing_free(hub_listing *l);

/* Reads "commit" from our manifest JSON; 0 on success, -1 otherwise. */
int hub_manifest_commit(const char *json, size_t len, char commit[41]);

/* ------------------------------------------------------------------ hub.c */

typedef struct hub_opts {
    char endpoint[1024];  /* HF_ENDPOINT without a trailing '/' */
    char token[1024];     /* HF_TOKEN, "" if unset */
    long connect_timeout; /* s, MEDEMBED_CONNECT_TIMEOUT (default 15) */
    long stall_timeout;   /* s, MEDEMBED_STALL_TIMEOUT (default 60) */
    long retries;         /* MEDEMBED_PULL_RETRIES (default 3) */
    int quiet;            /* no start/summary lines */
    int progress;         /* draw a progress bar on stderr */
} hub_opts;

/* Fills opts from the environment; prints an error and returns -1 if a
 * variable holds a bad value. */
int hub_opts_from_env(hub_opts *o);

/* The name of the variable that asks for offline mode (MEDEMBED_OFFLINE or
 * HF_HUB_OFFLINE set to 1/true/yes/on), or NULL when online. */
const char *hub_offline(void);

enum {
    HUB_PULL_OK = 0,
    HUB_PULL_ERROR = 1,   /* printed */
    HUB_PULL_NETWORK = 2, /* could not reach the hub at all; printed */
};

/* Pulls repo at rev ("" = main) into dest (created atomically; an existing
 * dest made by an earlier pull is replaced only when the hub's commit
 * differs). With if_missing, returns at once when dest already exists (used
 * by -m after waiting for a concurrent pull). Prints errors; on success and
 * !o->quiet prints a summary to stderr. */
int hub_pull(const hub_opts *o, const char *repo, const char *rev, const char *dest,
             int if_missing);

/* cache.c: -m resolution behind cli_resolve_model() (see cli.h). */
int hub_resolve_model(const char *arg, char *out, size_t out_len);

/* Prints how to get repo onto an offline machine (the pull command for a
 * connected machine, where to copy the folder, or -m DIR). hub_pull prints
 * it itself after a HUB_PULL_NETWORK failure. */
void hub_print_offline_hint(const char *repo, const char *rev, const char *dest);

#endif
