/*
 * cache.c - what `-m` means. Every command that loads a model resolves its
 * -m through hub_resolve_model():
 *   - the library decides what the name means (medembed_model_resolve: a
 *     folder as it is, a folder winning over a repo id of the same
 *     spelling; a repo id ORG/NAME[@REV] in medembed's cache or in the
 *     Hugging Face hub cache), without any network request;
 *   - a repo id the library does not find is pulled into the folder
 *     medembed_cache_dir() names, with a one-line notice on stderr (stdout
 *     stays clean for embeddings), unless MEDEMBED_OFFLINE/HF_HUB_OFFLINE
 *     is set, which gives the offline hint;
 *   - no -m at all means HUB_DEFAULT_MODEL.
 */
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "hub.h"

int hub_resolve_model(const char *arg, char *out, size_t out_len)
{
    int dflt = !arg || !*arg;
    if (dflt)
        arg = HUB_DEFAULT_MODEL;
    char err[2048];
    int rc = medembed_model_resolve(arg, out, out_len, err, sizeof err);
    if (rc == MEDEMBED_OK)
        return 0;
    /* Only a repo id the library did not find is ours to download. */
    char repo[ME_HUB_REPO_BUF], rev[ME_HUB_REV_BUF], dir[4096], derr[1024];
    if (rc != MEDEMBED_ERR_NOT_FOUND ||
        me_hub_ref_parse(arg, repo, sizeof repo, rev, sizeof rev, NULL, 0) != 0) {
        cli_error("%s", err);
        return 1;
    }
    if (medembed_cache_dir(arg, dir, sizeof dir, derr, sizeof derr) != MEDEMBED_OK) {
        cli_error("%s", derr);
        return 1;
    }
    /* A folder there that the library did not take (no config.json) is not
     * one a pull would replace: say what is wrong with it instead. */
    struct stat st;
    if (stat(dir, &st) == 0) {
        cli_error("%s", err);
        return 1;
    }
    const char *off = hub_offline();
    if (off) {
        cli_error("model %s is not in the cache (%s) nor in the Hugging Face hub cache, and %s "
                  "is set, so it cannot be downloaded",
                  arg, dir, off);
        hub_print_offline_hint(repo, rev, dir);
        return 1;
    }
    hub_opts o;
    if (hub_opts_from_env(&o) != 0)
        return 1;
    o.quiet = 1;
    if (dflt)
        fprintf(stderr, "medembed: no -m given; pulling the default model %s into %s\n", arg,
                dir);
    else
        fprintf(stderr, "medembed: %s is neither a folder here nor in the cache; pulling it "
                        "into %s\n",
                arg, dir);
    if (hub_pull(&o, repo, rev, dir, 1) != HUB_PULL_OK)
        return 1;
    /* The library has the last word on the folder it loads. */
    rc = medembed_model_resolve(arg, out, out_len, err, sizeof err);
    if (rc != MEDEMBED_OK) {
        cli_error("%s", err);
        return 1;
    }
    return 0;
}
