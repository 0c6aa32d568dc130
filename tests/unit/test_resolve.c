/*
 * test_resolve.c - medembed_model_resolve() and medembed_cache_dir(), the
 * one rule for what a model name means (include/medembed.h, "Model names"),
 * and medembed_model_load() taking a name.
 *
 * Each test builds its own folders under a fresh /tmp directory: medembed's
 * cache as `medembed pull` lays it out (docs/PULL.md) and a Hugging Face hub
 * cache as huggingface_hub lays it out (models--ORG--NAME/refs/REV holding
 * a commit, snapshots/COMMIT/ holding the files), and sets MEDEMBED_HOME,
 * HF_HUB_CACHE, HF_HOME and HOME itself. Expected paths are spelled out
 * literally from those layouts, not computed by the code under test.
 */
#include "test_util.h"

#include <errno.h>
#include <unistd.h>

#include "medembed.h"

#define COMMIT_A "0123456789abcdef0123456789abcdef01234567"
#define COMMIT_B "fedcba9876543210fedcba9876543210fedcba98"
#define COMMIT_PR "1111111111222222222233333333334444444444"

typedef struct fixture {
    char root[64];
} fixture;

static void mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        assert_true(mkdir(buf, 0755) == 0 || errno == EEXIST);
        *p = '/';
    }
    assert_true(mkdir(buf, 0755) == 0 || errno == EEXIST);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* A folder that counts as a model for the resolver: it holds config.json. */
static void model_folder(const char *dir)
{
    char p[4096];
    mkdirs(dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, "{}");
}

static char *path_of(char *buf, size_t n, const fixture *f, const char *rel)
{
    snprintf(buf, n, "%s/%s", f->root, rel);
    return buf;
}

static void rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

/* Fresh root; MEDEMBED_HOME=ROOT/home, HF_HUB_CACHE=ROOT/hf, HF_HOME unset,
 * HOME=ROOT/user, cwd = ROOT/cwd. */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/me_resolve_XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    char p[4096];
    setenv("MEDEMBED_HOME", path_of(p, sizeof p, f, "home"), 1);
    setenv("HF_HUB_CACHE", path_of(p, sizeof p, f, "hf"), 1);
    unsetenv("HF_HOME");
    unsetenv("HUGGINGFACE_HUB_CACHE");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", path_of(p, sizeof p, f, "user"), 1);
    mkdirs(path_of(p, sizeof p, f, "cwd"));
    if (chdir(p) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (chdir("/") != 0)
        return -1;
    rm_rf(f->root);
    free(f);
    return 0;
}

/* resolve(name) must be OK and give exactly want. */
static void expect_dir(const char *name, const char *want)
{
    char dir[4096], err[2048] = "";
    int rc = medembed_model_resolve(name, dir, sizeof dir, err, sizeof err);
    if (rc != MEDEMBED_OK)
        fail_msg("resolve(%s): %d %s", name, rc, err);
    assert_string_equal(dir, want);
}

/* resolve(name) must fail with status and a message containing each of the
 * NULL-terminated needles; dir stays untouched. */
static void expect_fail(const char *name, int status, ...)
{
    char dir[64] = "untouched", err[4096] = "";
    int rc = medembed_model_resolve(name, dir, sizeof dir, err, sizeof err);
    if (rc != status)
        fail_msg("resolve(%s): got %d (%s), want %d", name, rc, err, status);
    assert_string_equal(dir, "untouched");
    va_list ap;
    va_start(ap, status);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        if (!strstr(err, s))
            fail_msg("resolve(%s): message \"%s\" lacks \"%s\"", name, err, s);
    va_end(ap);
}

static void test_folder_is_used_as_given(void **state)
{
    fixture *f = *state;
    char p[4096];
    /* No config.json needed: a folder is the caller's choice, and the
     * loader says what it lacks. */
    mkdirs(path_of(p, sizeof p, f, "some/folder"));
    expect_dir(p, p);
    mkdirs(path_of(p, sizeof p, f, "cwd/rel"));
    expect_dir("rel", "rel");
    expect_dir("./rel", "./rel");
    expect_dir(".", ".");
}

static void test_folder_wins_over_repo_id(void **state)
{
    fixture *f = *state;
    char p[4096];
    model_folder(path_of(p, sizeof p, f, "home/models/acme/tiny"));
    expect_dir("acme/tiny", p); /* from the cache while cwd has no such folder */
    mkdirs(path_of(p, sizeof p, f, "cwd/acme/tiny"));
    expect_dir("acme/tiny", "acme/tiny");
}

static void test_file_is_an_error(void **state)
{
    fixture *f = *state;
    char p[4096], whl[4096];
    write_text(path_of(p, sizeof p, f, "notes.txt"), "x");
    expect_fail(p, MEDEMBED_ERR_ARG, p, "is a file", "ORG/NAME", NULL);
    write_text(path_of(whl, sizeof whl, f, "m-0.1-py3-none-any.whl"), "PK\x03\x04");
    expect_fail(whl, MEDEMBED_ERR_ARG, whl, "is a wheel",
                "python3 -m zipfile -e", "holds config.json", NULL);
    /* A file where a repo id's folder would be is still a file. */
    mkdirs(path_of(p, sizeof p, f, "cwd/acme"));
    write_text(path_of(p, sizeof p, f, "cwd/acme/tiny"), "x");
    model_folder(path_of(p, sizeof p, f, "home/models/acme/tiny"));
    expect_fail("acme/tiny", MEDEMBED_ERR_ARG, "acme/tiny is a file", NULL);
}

static void test_our_cache_with_and_without_rev(void **state)
{
    fixture *f = *state;
    char main_dir[4096], v1[4096], pr[4096], pct[4096];
    model_folder(path_of(main_dir, sizeof main_dir, f, "home/models/acme/tiny"));
    model_folder(path_of(v1, sizeof v1, f, "home/models/acme/tiny@v1.0"));
    model_folder(path_of(pr, sizeof pr, f, "home/models/acme/tiny@refs%2Fpr%2F1"));
    model_folder(path_of(pct, sizeof pct, f, "home/models/acme/tiny@50%25off"));
    expect_dir("acme/tiny", main_dir);
    expect_dir("acme/tiny@main", main_dir);
    expect_dir("acme/tiny@v1.0", v1);
    expect_dir("acme/tiny@refs/pr/1", pr);
    expect_dir("acme/tiny@50%off", pct);
    /* a folder without config.json is not a cached model */
    char p[4096];
    mkdirs(path_of(p, sizeof p, f, "home/models/acme/empty"));
    expect_fail("acme/empty", MEDEMBED_ERR_NOT_FOUND, p, "holds no config.json", NULL);
}

static void test_cache_dir(void **state)
{
    fixture *f = *state;
    char want[4096], dir[4096], err[1024];
    /* whether or not the folder exists */
    assert_int_equal(medembed_cache_dir("acme/tiny", dir, sizeof dir, err, sizeof err),
                     MEDEMBED_OK);
    assert_string_equal(dir, path_of(want, sizeof want, f, "home/models/acme/tiny"));
    assert_int_equal(medembed_cache_dir("acme/tiny@main", dir, sizeof dir, err, sizeof err),
                     MEDEMBED_OK);
    assert_string_equal(dir, want);
    assert_int_equal(medembed_cache_dir("acme/tiny@refs/pr/1", dir, sizeof dir, err, sizeof err),
                     MEDEMBED_OK);
    assert_string_equal(dir, path_of(want, sizeof want, f, "home/models/acme/tiny@refs%2Fpr%2F1"));
    assert_int_equal(medembed_cache_dir(NULL, dir, sizeof dir, err, sizeof err), MEDEMBED_OK);
    assert_string_equal(dir, path_of(want, sizeof want, f, "home"));
    strcpy(dir, "untouched");
    assert_int_equal(medembed_cache_dir("a/b/c", dir, sizeof dir, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    assert_non_null(strstr(err, "not a hub repo id"));
    assert_int_equal(medembed_cache_dir("acme/x@a b", dir, sizeof dir, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    assert_non_null(strstr(err, "not a valid revision"));
    assert_string_equal(dir, "untouched");
    /* MEDEMBED_HOME unset or empty: ~/.cache/medembed */
    setenv("MEDEMBED_HOME", "", 1);
    assert_int_equal(medembed_cache_dir("acme/tiny", dir, sizeof dir, err, sizeof err),
                     MEDEMBED_OK);
    assert_string_equal(dir,
                        path_of(want, sizeof want, f, "user/.cache/medembed/models/acme/tiny"));
    unsetenv("MEDEMBED_HOME");
    assert_int_equal(medembed_cache_dir(NULL, dir, sizeof dir, err, sizeof err), MEDEMBED_OK);
    assert_string_equal(dir, path_of(want, sizeof want, f, "user/.cache/medembed"));
    /* and the resolver looks there too */
    model_folder(path_of(want, sizeof want, f, "user/.cache/medembed/models/acme/deflt"));
    expect_dir("acme/deflt", want);
    /* XDG_CACHE_HOME set: $XDG_CACHE_HOME/medembed */
    char p[4096];
    setenv("XDG_CACHE_HOME", path_of(p, sizeof p, f, "xdg"), 1);
    assert_int_equal(medembed_cache_dir("acme/tiny", dir, sizeof dir, err, sizeof err),
                     MEDEMBED_OK);
    assert_string_equal(dir, path_of(want, sizeof want, f, "xdg/medembed/models/acme/tiny"));
    unsetenv("XDG_CACHE_HOME");
}

/* A hub-cache repo as huggingface_hub leaves it: refs/<rev> holds the
 * commit (no newline), snapshots/<commit>/ the files. */
static void hf_repo(const fixture *f, const char *hub_rel, const char *repo_folder,
                    const char *ref, const char *commit, int with_config)
{
    char p[4096], rel[1024];
    snprintf(rel, sizeof rel, "%s/%s/snapshots/%s", hub_rel, repo_folder, commit);
    path_of(p, sizeof p, f, rel);
    if (with_config)
        model_folder(p);
    else
        mkdirs(p);
    if (ref) {
        snprintf(rel, sizeof rel, "%s/%s/refs/%s", hub_rel, repo_folder, ref);
        path_of(p, sizeof p, f, rel);
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", p);
        *strrchr(parent, '/') = 0;
        mkdirs(parent);
        write_text(p, commit);
    }
}

static void test_hf_cache_refs_and_commits(void **state)
{
    fixture *f = *state;
    char want[4096];
    hf_repo(f, "hf", "models--acme--hfonly", "main", COMMIT_A, 1);
    expect_dir("acme/hfonly", path_of(want, sizeof want, f,
                                      "hf/models--acme--hfonly/snapshots/" COMMIT_A));
    expect_dir("acme/hfonly@main", want);
    /* a commit with no ref pointing at it, by its hash */
    hf_repo(f, "hf", "models--acme--hfonly", NULL, COMMIT_B, 1);
    expect_dir("acme/hfonly@" COMMIT_B,
               path_of(want, sizeof want, f, "hf/models--acme--hfonly/snapshots/" COMMIT_B));
    /* a ref with '/' in it is a nested file under refs/ */
    hf_repo(f, "hf", "models--acme--hfonly", "refs/pr/1", COMMIT_PR, 1);
    expect_dir("acme/hfonly@refs/pr/1",
               path_of(want, sizeof want, f, "hf/models--acme--hfonly/snapshots/" COMMIT_PR));
    /* a ref file with a trailing newline (written by hand) still works */
    char p[4096];
    write_text(path_of(p, sizeof p, f, "hf/models--acme--hfonly/refs/main"), COMMIT_B "\n");
    expect_dir("acme/hfonly", path_of(want, sizeof want, f,
                                      "hf/models--acme--hfonly/snapshots/" COMMIT_B));
    /* an unknown branch: not found, naming the ref */
    expect_fail("acme/hfonly@dev", MEDEMBED_ERR_NOT_FOUND, "refs/dev",
                "medembed pull acme/hfonly@dev", NULL);
    /* a snapshot with only some files (no config.json) does not count */
    hf_repo(f, "hf", "models--acme--partial", "main", COMMIT_A, 0);
    expect_fail("acme/partial", MEDEMBED_ERR_NOT_FOUND, "holds no config.json", NULL);
    /* a ref that holds no commit is ignored */
    write_text(path_of(p, sizeof p, f, "hf/models--acme--hfonly/refs/main"), "../../etc");
    expect_fail("acme/hfonly", MEDEMBED_ERR_NOT_FOUND, "does not name a commit", NULL);
}

static void test_our_cache_before_hf_cache(void **state)
{
    fixture *f = *state;
    char ours[4096];
    hf_repo(f, "hf", "models--acme--both", "main", COMMIT_A, 1);
    model_folder(path_of(ours, sizeof ours, f, "home/models/acme/both"));
    expect_dir("acme/both", ours);
}

static void test_hf_env_variables(void **state)
{
    fixture *f = *state;
    char want[4096];
    hf_repo(f, "hfhome/hub", "models--acme--viahome", "main", COMMIT_A, 1);
    hf_repo(f, "user/.cache/huggingface/hub", "models--acme--viauser", "main", COMMIT_B, 1);
    /* HF_HUB_CACHE set: only there */
    expect_fail("acme/viahome", MEDEMBED_ERR_NOT_FOUND, NULL);
    expect_fail("acme/viauser", MEDEMBED_ERR_NOT_FOUND, NULL);
    /* HF_HUB_CACHE unset (or empty), HF_HOME set: $HF_HOME/hub */
    char p[4096];
    setenv("HF_HUB_CACHE", "", 1);
    setenv("HF_HOME", path_of(p, sizeof p, f, "hfhome"), 1);
    expect_dir("acme/viahome", path_of(want, sizeof want, f,
                                       "hfhome/hub/models--acme--viahome/snapshots/" COMMIT_A));
    expect_fail("acme/viauser", MEDEMBED_ERR_NOT_FOUND, NULL);
    /* HUGGINGFACE_HUB_CACHE (the older name) comes before HF_HOME, after HF_HUB_CACHE */
    hf_repo(f, "oldname", "models--acme--viaold", "main", COMMIT_A, 1);
    setenv("HUGGINGFACE_HUB_CACHE", path_of(p, sizeof p, f, "oldname"), 1);
    expect_dir("acme/viaold", path_of(want, sizeof want, f,
                                      "oldname/models--acme--viaold/snapshots/" COMMIT_A));
    expect_fail("acme/viahome", MEDEMBED_ERR_NOT_FOUND, NULL);
    setenv("HF_HUB_CACHE", path_of(p, sizeof p, f, "hf"), 1);
    expect_fail("acme/viaold", MEDEMBED_ERR_NOT_FOUND, NULL);
    unsetenv("HUGGINGFACE_HUB_CACHE");
    /* neither: $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub */
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    hf_repo(f, "xdg/huggingface/hub", "models--acme--viaxdg", "main", COMMIT_B, 1);
    setenv("XDG_CACHE_HOME", path_of(p, sizeof p, f, "xdg"), 1);
    expect_dir("acme/viaxdg",
               path_of(want, sizeof want, f,
                       "xdg/huggingface/hub/models--acme--viaxdg/snapshots/" COMMIT_B));
    expect_fail("acme/viauser", MEDEMBED_ERR_NOT_FOUND, NULL);
    setenv("XDG_CACHE_HOME", "", 1); /* empty counts as unset, as HF_HOME does */
    expect_dir("acme/viauser",
               path_of(want, sizeof want, f,
                       "user/.cache/huggingface/hub/models--acme--viauser/snapshots/" COMMIT_B));
    expect_fail("acme/viahome", MEDEMBED_ERR_NOT_FOUND, NULL);
    expect_fail("acme/viaxdg", MEDEMBED_ERR_NOT_FOUND, NULL);
    unsetenv("XDG_CACHE_HOME");
}

static void test_not_found_names_where_it_looked(void **state)
{
    fixture *f = *state;
    char ours[4096], hub[4096];
    path_of(ours, sizeof ours, f, "home/models/acme/none@v2");
    path_of(hub, sizeof hub, f, "hf/models--acme--none");
    expect_fail("acme/none@v2", MEDEMBED_ERR_NOT_FOUND, "acme/none@v2", ours, hub,
                "medembed pull acme/none@v2", NULL);
    expect_fail("/nonexistent/model", MEDEMBED_ERR_NOT_FOUND, "/nonexistent/model",
                "no such model folder", NULL);
    expect_fail("./nope", MEDEMBED_ERR_NOT_FOUND, "no such model folder", NULL);
    expect_fail("~/nope", MEDEMBED_ERR_NOT_FOUND, "no such model folder", NULL);
}

static void test_bad_syntax(void **state)
{
    (void)state;
    static const char *const bad[] = {"no-slash", "a/b/c", "org/-bad", "-org/x", "org/x.",
                                      "org/a..b", "org/", "/x", "org/x y", "ORG/NAME/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_fail(bad[i], MEDEMBED_ERR_NOT_FOUND, "no such model folder", NULL);
    expect_fail("org/x@a b", MEDEMBED_ERR_NOT_FOUND, "not a valid revision", NULL);
    expect_fail("org/x@../../etc", MEDEMBED_ERR_NOT_FOUND, "not a valid revision", NULL);
    expect_fail("org/x@/abs", MEDEMBED_ERR_NOT_FOUND, "not a valid revision", NULL);
    expect_fail("org/x@", MEDEMBED_ERR_NOT_FOUND, "not a valid revision", NULL);
    char name[300];
    memset(name, 'a', sizeof name);
    memcpy(name, "org/", 4);
    name[sizeof name - 1] = 0; /* NAME of 295 characters, over the hub's 96 */
    expect_fail(name, MEDEMBED_ERR_NOT_FOUND, "nor a hub repo id", NULL);
}

static void test_buffer_too_small_and_bad_args(void **state)
{
    fixture *f = *state;
    char p[4096], small[16], err[1024];
    mkdirs(path_of(p, sizeof p, f, "a-folder-with-a-long-name"));
    memset(small, 'x', sizeof small);
    assert_int_equal(medembed_model_resolve(p, small, sizeof small, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    assert_non_null(strstr(err, "16-byte buffer"));
    for (size_t i = 0; i < sizeof small; i++)
        assert_int_equal(small[i], 'x'); /* nothing written */
    /* exactly enough room: strlen + 1 */
    size_t n = strlen(p);
    char *exact = malloc(n + 1);
    assert_int_equal(medembed_model_resolve(p, exact, n + 1, err, sizeof err), MEDEMBED_OK);
    assert_string_equal(exact, p);
    assert_int_equal(medembed_model_resolve(p, exact, n, err, sizeof err), MEDEMBED_ERR_ARG);
    free(exact);
    /* a cache hit and the cache folder too */
    model_folder(path_of(p, sizeof p, f, "home/models/acme/tiny"));
    assert_int_equal(medembed_model_resolve("acme/tiny", small, sizeof small, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    assert_int_equal(medembed_cache_dir("acme/tiny", small, sizeof small, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    /* NULLs, empty names, no err buffer */
    char dir[64];
    assert_int_equal(medembed_model_resolve(NULL, dir, sizeof dir, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    assert_int_equal(medembed_model_resolve("acme/tiny", NULL, 10, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    assert_int_equal(medembed_model_resolve("acme/tiny", dir, 0, NULL, 0), MEDEMBED_ERR_ARG);
    assert_int_equal(medembed_model_resolve("", dir, sizeof dir, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    assert_non_null(strstr(err, "empty model name"));
    assert_int_equal(medembed_model_resolve("acme/none", dir, sizeof dir, NULL, 0),
                     MEDEMBED_ERR_NOT_FOUND);
    assert_int_equal(medembed_cache_dir("acme/tiny", NULL, 10, err, sizeof err),
                     MEDEMBED_ERR_ARG);
    /* a 1-byte error buffer gets just the NUL */
    char tiny_err[1] = {'x'};
    assert_int_equal(medembed_model_resolve("acme/none", dir, sizeof dir, tiny_err, 1),
                     MEDEMBED_ERR_NOT_FOUND);
    assert_int_equal(tiny_err[0], 0);
}

/* medembed_model_load takes a name through the same resolver: its errors
 * name the resolved folder, and (with ../shared) a model in either cache
 * loads as the folder it came from. */
static void test_model_load_takes_a_name(void **state)
{
    fixture *f = *state;
    char p[4096], err[2048];
    medembed_model *m = NULL;
    assert_int_equal(medembed_model_load("acme/none", NULL, &m, err, sizeof err),
                     MEDEMBED_ERR_NOT_FOUND);
    assert_null(m);
    assert_non_null(strstr(err, "medembed pull acme/none"));
    /* a cache folder whose config.json is not a model: the load reached it */
    model_folder(path_of(p, sizeof p, f, "home/models/acme/broken"));
    assert_int_not_equal(medembed_model_load("acme/broken", NULL, &m, err, sizeof err),
                         MEDEMBED_OK);
    assert_null(m);
    if (!strstr(err, p))
        fail_msg("load error \"%s\" does not name %s", err, p);

    char src[1024];
    SKIP_WITHOUT_SHARED(src, "golden/embeddings/tiny-cls-f32");
    char abs_src[4096];
    assert_non_null(realpath(src, abs_src));
    medembed_model *direct = NULL;
    assert_int_equal(medembed_model_load(abs_src, NULL, &direct, err, sizeof err), MEDEMBED_OK);
    /* in the HF hub cache only, under a 40-hex commit named by refs/main */
    char snap[4096];
    path_of(snap, sizeof snap, f, "hf/models--acme--golden/snapshots/" COMMIT_A);
    mkdirs(path_of(p, sizeof p, f, "hf/models--acme--golden/snapshots"));
    assert_int_equal(symlink(abs_src, snap), 0);
    mkdirs(path_of(p, sizeof p, f, "hf/models--acme--golden/refs"));
    write_text(path_of(p, sizeof p, f, "hf/models--acme--golden/refs/main"), COMMIT_A);
    assert_int_equal(medembed_model_load("acme/golden", NULL, &m, err, sizeof err), MEDEMBED_OK);
    char info[8192];
    medembed_model_info_json(m, info, sizeof info);
    char want[4200];
    snprintf(want, sizeof want, "\"%s\"", snap);
    if (!strstr(info, want))
        fail_msg("info %s lacks %s", info, want);
    assert_string_equal(medembed_model_fingerprint(m), medembed_model_fingerprint(direct));
    medembed_model_free(m);
    medembed_model_free(direct);
}

int main(void)
{
    /* The tests change the working folder: pin ../shared first. */
    char *shared = realpath(test_shared_dir(), NULL);
    if (shared)
        setenv("MEDEMBED_SHARED", shared, 1);
    free(shared);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_folder_is_used_as_given, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_wins_over_repo_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_our_cache_with_and_without_rev, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hf_cache_refs_and_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_our_cache_before_hf_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hf_env_variables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_names_where_it_looked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_too_small_and_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_load_takes_a_name, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
