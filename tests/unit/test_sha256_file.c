/*
 * test_sha256_file.c - me_sha256_file() (src/util/sha256_file.c), the digest
 * `medembed pull` checks LFS downloads with (the CLI compiles that file in):
 * FIPS 180-4 example vectors, a file that spans several 1 MiB read blocks
 * (digest from Python's hashlib), and the errors.
 */
#include "test_util.h"

#include <unistd.h>

#include "medembed.h"
#include "util/sha256.h"

static void write_file(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void check(const unsigned char *b, size_t n, const char *want)
{
    char path[] = "/tmp/me_sha_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, b, n);
    char hex[65];
    char err[256];
    assert_int_equal(me_sha256_file(path, hex, err, sizeof err), MEDEMBED_OK);
    assert_string_equal(hex, want);
    unlink(path);
}

static void test_fips_vectors(void **state)
{
    (void)state;
    check((const unsigned char *)"", 0,
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check((const unsigned char *)"abc", 3,
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check((const unsigned char *)two, strlen(two),
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    size_t n = 1000000;
    unsigned char *a = malloc(n);
    assert_non_null(a);
    memset(a, 'a', n);
    check(a, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

/* 3 MiB + 17 bytes: several full read blocks and a ragged tail. The digest is
 * hashlib.sha256(bytes((i*7+3) & 0xff for i in range(3*1048576+17))). */
static void test_multi_block(void **state)
{
    (void)state;
    size_t n = 3u * 1048576u + 17u;
    unsigned char *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)((i * 7 + 3) & 0xff);
    check(b, n, "af0420698203db612d2363019e5daab6c288a059aad9a9ee0270be2cd0f5bd4d");
    free(b);
}

static void test_errors(void **state)
{
    (void)state;
    char hex[65] = "unchanged";
    char err[256] = "";
    assert_int_equal(me_sha256_file("/nonexistent/me_sha_missing", hex, err, sizeof err),
                     MEDEMBED_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "/nonexistent/me_sha_missing"));
    assert_string_equal(hex, "unchanged");
    /* A directory opens but cannot be read. */
    assert_int_equal(me_sha256_file("/tmp", hex, err, sizeof err), MEDEMBED_ERR_IO);
    assert_string_equal(hex, "unchanged");
    assert_int_equal(me_sha256_file(NULL, hex, NULL, 0), MEDEMBED_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fips_vectors),
        cmocka_unit_test(test_multi_block),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
