/*
 * cmd_pull.c - `medembed pull REPO_ID[@REV] [--revision REV] [--dir DIR]`:
 * downloads a model from the Hugging Face hub into the cache (or DIR) and
 * prints the folder on stdout, so `dir=$(medembed pull ...)` works. The
 * transfer itself is hub.c; the user-facing story is docs/PULL.md.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "hub.h"

static void pull_usage(FILE *f)
{
    fprintf(f,
            "usage: medembed pull REPO_ID[@REV] [--revision REV] [--dir DIR] [-q]\n"
            "\n"
            "Downloads what medembed needs from the Hugging Face hub (config, safetensors\n"
            "weights, tokenizer and sentence-transformers files; nothing else) and prints\n"
            "the folder. Without --dir the folder is the model cache,\n"
            "$MEDEMBED_HOME/models/ORG/NAME[@REV] (MEDEMBED_HOME defaults to\n"
            "$XDG_CACHE_HOME/medembed, else ~/.cache/medembed), where every\n"
            "`-m ORG/NAME` finds it. A folder that already holds the hub's current\n"
            "commit is left alone; an interrupted pull resumes.\n"
            "\n"
            "  --revision REV   branch, tag or commit (default main); same as REPO_ID@REV\n"
            "  --dir DIR        download into DIR instead of the cache\n"
            "  -q, --quiet      print only errors and the folder\n"
            "\n"
            "Environment: HF_ENDPOINT (default %s), HF_TOKEN (gated or private\n"
            "repos), MEDEMBED_HOME, MEDEMBED_CONNECT_TIMEOUT (s, default 15),\n"
            "MEDEMBED_STALL_TIMEOUT (s without data, default 60), MEDEMBED_PULL_RETRIES\n"
            "(default 3). See docs/PULL.md.\n",
            HUB_DEFAULT_ENDPOINT);
}

int cmd_pull(int argc, char **argv)
{
    static const struct option opts[] = {
        {"revision", required_argument, 0, 'r'},
        {"dir", required_argument, 0, 'd'},
        {"quiet", no_argument, 0, 'q'},
        CLI_OPTION_HELP,
        CLI_OPTION_END,
    };
    cli_common co; /* pull takes no shared option, only --help and the errors */
    cli_common_init(&co, "pull", pull_usage);
    const char *revision = NULL, *dir = NULL;
    int quiet = 0;
    int c, prc;
    while ((c = getopt_long(argc, argv, ":qh", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            revision = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        default:
            if ((prc = cli_common_opt(&co, c, optarg, argv)) != 0)
                return prc < 0 ? 0 : prc; /* -1: --help */
        }
    }
    if (optind >= argc) {
        cli_error("pull needs a repo id, e.g. medembed pull %s", HUB_DEFAULT_MODEL);
        return 2;
    }
    if (optind + 1 < argc) {
        cli_error("unexpected argument \"%s\" (pull takes one repo id)", argv[optind + 1]);
        return 2;
    }
    char repo[ME_HUB_REPO_BUF], rev[ME_HUB_REV_BUF], err[1024];
    if (me_hub_ref_parse(argv[optind], repo, sizeof repo, rev, sizeof rev, err, sizeof err) != 0) {
        cli_error("%s", err);
        return 2;
    }
    if (revision) {
        if (!me_hub_revision_valid(revision, strlen(revision))) {
            cli_error("--revision \"%.200s\" is not a valid branch, tag or commit", revision);
            return 2;
        }
        if (rev[0] && strcmp(rev, revision) != 0) {
            cli_error("the revision is given twice, as @%s and --revision %s", rev, revision);
            return 2;
        }
        snprintf(rev, sizeof rev, "%s", revision);
    }
    const char *off = hub_offline();
    if (off) {
        cli_error("%s is set, so pull may not download; unset it on a connected machine", off);
        return 1;
    }
    char dest[4096];
    if (dir) {
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            n--;
        if (n == 0 || n >= sizeof dest) {
            cli_error("--dir needs a folder path");
            return 2;
        }
        memcpy(dest, dir, n);
        dest[n] = 0;
    } else {
        /* The library names the cache folder, the one -m and Python look in. */
        char ref[ME_HUB_REPO_BUF + ME_HUB_REV_BUF + 1];
        snprintf(ref, sizeof ref, "%s%s%s", repo, rev[0] ? "@" : "", rev);
        if (medembed_cache_dir(ref, dest, sizeof dest, err, sizeof err) != MEDEMBED_OK) {
            cli_error("%s", err);
            return 1;
        }
    }
    hub_opts o;
    if (hub_opts_from_env(&o) != 0)
        return 2;
    o.quiet = quiet;
    if (quiet)
        o.progress = 0;
    int rc = hub_pull(&o, repo, rev, dest, 0);
    if (rc != HUB_PULL_OK)
        return 1;
    printf("%s\n", dest);
    return fflush(stdout) == 0 ? 0 : 1;
}
