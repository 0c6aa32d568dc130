/*
 * fuzz_hub.c - libFuzzer target for the hub client's parsers
 * (tools/cli/hub_parse.c): the hub's file listing JSON, our pull manifest,
 * and repo ids / revisions as typed after -m or `medembed pull`
 * (src/model/hubref.c, which the library and the CLI share).
 *
 * hub_parse.c lives with the CLI, not in the library, so it is included
 * here whole; hubref.c comes from libmedembed.a, which every fuzz target
 * links: `make fuzz` (tests/fuzz/build.sh) and `make fuzz-replay` build
 * this file like the others, with no extra sources. By hand:
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude -Isrc $(pkg-config --cflags jansson) \
 *     tests/fuzz/fuzz_hub.c src/model/hubref.c $(pkg-config --libs jansson) -o /tmp/fz && \
 *     /tmp/fz -max_total_time=20
 *
 * Beyond "no crash", it checks the promises the downloader relies on: every
 * accepted file is one the engine wants, has a safe relative name and a sane
 * size, and an accepted listing always has config, weights and a tokenizer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/cli/hub_parse.c"

static int name_in(const hub_listing *l, const char *n)
{
    for (size_t i = 0; i < l->n_files; i++)
        if (strcmp(l->files[i].name, n) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    hub_listing l;
    if (hub_listing_parse((const char *)data, size, &l, err, sizeof err) == 0) {
        if (!name_in(&l, "config.json"))
            abort();
        if (!name_in(&l, "tokenizer.json") && !name_in(&l, "vocab.txt"))
            abort();
        for (size_t i = 0; i < l.n_files; i++) {
            const hub_file *f = &l.files[i];
            if (!hub_file_wanted(f->name) || f->name[0] == '/' || strstr(f->name, "..") ||
                strchr(f->name, '\\') || f->size < -1 || (f->sha256[0] && strlen(f->sha256) != 64))
                abort();
        }
        if (l.total < 0)
            abort();
        hub_listing_free(&l);
    } else if (l.files || l.n_files) {
        abort(); /* zeroed on failure */
    }
    char commit[41];
    if (hub_manifest_commit((const char *)data, size, commit) == 0 && strlen(commit) != 40)
        abort();

    /* The same bytes as a command-line argument. */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    char repo[ME_HUB_REPO_BUF], rev[ME_HUB_REV_BUF];
    if (me_hub_ref_parse(s, repo, sizeof repo, rev, sizeof rev, err, sizeof err) == 0) {
        if (!me_hub_repo_id_valid(repo, strlen(repo)) || strstr(repo, "..") ||
            (rev[0] && !me_hub_revision_valid(rev, strlen(rev))))
            abort();
    }
    (void)hub_file_wanted(s);
    free(s);
    return 0;
}
