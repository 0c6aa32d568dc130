/*
 * test_safetensors.c - the safetensors reader and config parser on valid
 * and corrupted inputs built in memory: every rule of the format is checked
 * and every error message names the tensor or field at fault.
 */
#include "test_util.h"

#include <jansson.h>
#include <unistd.h>

#include "model/config.h"
#include "model/safetensors.h"
#include "util/file.h"
#include "util/json.h"

/* Builds an image: 8-byte length, header, then `data_len` bytes of data. */
static uint8_t *image(const char *header, size_t data_len, size_t *len)
{
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    uint8_t *b = calloc(1, *len);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        b[8 + hl + i] = (uint8_t)i;
    return b;
}

static int parse(const char *header, size_t data_len, me_st_file *f, me_err *e)
{
    size_t len;
    uint8_t *b = image(header, data_len, &len);
    int rc = me_st_parse(b, len, "t.safetensors", f, e);
    if (rc == MEDEMBED_OK)
        me_st_close(f);
    free(b);
    return rc;
}

static void expect_error(const char *header, size_t data_len, const char *needle)
{
    me_st_file f;
    me_err e = {{0}};
    int rc = parse(header, data_len, &f, &e);
    if (rc == MEDEMBED_OK || !strstr(e.msg, needle))
        fail_msg("header %s: rc %d, message \"%s\" lacks \"%s\"", header, rc, e.msg, needle);
}

static void test_valid(void **state)
{
    (void)state;
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    size_t len;
    uint8_t *b = image(h, 28, &len);
    me_st_file f;
    me_err e;
    assert_int_equal(me_st_parse(b, len, "t", &f, &e), MEDEMBED_OK);
    assert_int_equal(f.n_tensors, 2);
    const me_st_tensor *a = me_st_find(&f, "a");
    assert_non_null(a);
    assert_int_equal(a->dtype, ME_ST_F32);
    assert_int_equal(a->n_dims, 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(a->n_bytes, 24);
    assert_ptr_equal(a->data, b + 8 + strlen(h));
    assert_null(me_st_find(&f, "c"));
    assert_int_equal(me_st_find(&f, "b")->numel, 2);
    me_st_close(&f);
    free(b);
}

static void test_truncated(void **state)
{
    (void)state;
    me_st_file f;
    me_err e = {{0}};
    uint8_t tiny[5] = {1, 2, 3, 4, 5};
    assert_int_equal(me_st_parse(tiny, sizeof tiny, "t", &f, &e), MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "too short"));
    /* Header length larger than the file. */
    size_t len;
    uint8_t *b = image("{}", 0, &len);
    b[0] = 200;
    assert_int_equal(me_st_parse(b, len, "t", &f, &e), MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "exceeds the file size"));
    free(b);
    /* Data cut short: offsets beyond the data block. */
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                 "outside the data block");
}

static void test_bad_entries(void **state)
{
    (void)state;
    expect_error("{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                 "unknown dtype \"Q4\"");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                 "needs 12");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                 "shape[0]");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                 "\"data_offsets\":[0,4]}}",
                 4, "overflows");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                 "outside the data block");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 8, "data_offsets");
    expect_error("{\"w\":[1,2]}", 8, "not an object");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                 12, "overlap");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 8, "duplicate");
    expect_error("{not json", 0, "invalid JSON");
    expect_error("[1,2,3]", 0, "expected a JSON object");
}

static void test_missing_file(void **state)
{
    (void)state;
    me_st_file f;
    me_err e = {{0}};
    assert_int_equal(me_st_open("/nonexistent/model.safetensors", &f, &e),
                     MEDEMBED_ERR_NOT_FOUND);
    assert_non_null(strstr(e.msg, "/nonexistent/model.safetensors"));
}

/* me_map_read copies exactly the bytes the mapping shows, and refuses any
 * range that is not wholly inside the mapping. */
static void test_map_read(void **state)
{
    (void)state;
    char path[] = "/tmp/medembed-map-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    uint8_t data[10000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(write(fd, data, sizeof data), (ssize_t)sizeof data);
    close(fd);
    me_map mp;
    me_err e = {{0}};
    assert_int_equal(me_map_open(path, &mp, &e), MEDEMBED_OK);
    /* unlinked after the tail test below; until then the path truncates it */
    uint8_t out[10001];
    memset(out, 0, sizeof out);
    assert_int_equal(me_map_read(&mp, mp.data + 4093, 5000, out), 0);
    assert_memory_equal(out, mp.data + 4093, 5000);
    assert_memory_equal(out, data + 4093, 5000);
    assert_int_equal(me_map_read(&mp, mp.data, sizeof data, out), 0);
    assert_memory_equal(out, data, sizeof data);
    assert_int_equal(me_map_read(&mp, mp.data + sizeof data, 0, out), 0);
    /* past the end, before the start, or not in the mapping at all */
    assert_int_equal(me_map_read(&mp, mp.data + 1, sizeof data, out), -1);
    assert_int_equal(me_map_read(&mp, mp.data + sizeof data, 1, out), -1);
    assert_int_equal(me_map_read(&mp, (const void *)((uintptr_t)mp.data - 1), 1, out), -1);
    assert_int_equal(me_map_read(&mp, data, 1, out), -1);
    assert_int_equal(me_map_read(&mp, mp.data, SIZE_MAX, out), -1);
    /* the file shrank under the mapping: the read of its old tail fails
     * (and does not fault, as touching those mapped pages would) */
    assert_int_equal(truncate(path, 6000), 0);
    assert_int_equal(me_map_read(&mp, mp.data + 5000, 1000, out), 0);
    assert_memory_equal(out, data + 5000, 1000);
    assert_int_equal(me_map_read(&mp, mp.data + 5000, 2000, out), -1);
    unlink(path);
    const uint8_t *base = mp.data;
    me_map_close(&mp);
    assert_int_equal(mp.fd, -1);
    assert_null(mp.data);
    assert_int_equal(me_map_read(&mp, base, 1, out), -1); /* closed */
    /* a safetensors image parsed from memory has no file to read */
    me_st_file f;
    size_t len;
    uint8_t *b = image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &len);
    assert_int_equal(me_st_parse(b, len, "t.safetensors", &f, &e), MEDEMBED_OK);
    assert_int_equal(me_map_read(&f.map, f.tensors[0].data, 8, out), -1);
    me_st_close(&f);
    free(b);
}

static int cfg(const char *json, me_config *c, me_err *e)
{
    json_t *j = NULL;
    int rc = me_json_load_buf(json, strlen(json), "config.json", &j, e);
    if (rc != MEDEMBED_OK)
        return rc;
    memset(c, 0, sizeof *c);
    rc = me_config_parse_bert(j, "config.json", c, e);
    json_decref(j);
    return rc;
}

#define BASE "\"vocab_size\":100,\"hidden_size\":8,\"num_hidden_layers\":1,"                   \
             "\"num_attention_heads\":2,\"intermediate_size\":16"

static void test_config(void **state)
{
    (void)state;
    me_config c;
    me_err e = {{0}};
    assert_int_equal(cfg("{\"model_type\":\"bert\"," BASE "}", &c, &e), MEDEMBED_OK);
    assert_int_equal(c.hidden, 8);
    assert_int_equal(c.max_pos, 512);     /* default */
    assert_true(c.ln_eps == 1e-12);       /* default */
    assert_int_equal(cfg("{\"model_type\":\"roberta\"," BASE "}", &c, &e),
                     MEDEMBED_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "roberta"));
    assert_int_equal(cfg("{\"model_type\":\"bert\",\"hidden_act\":\"gelu_new\"," BASE "}", &c, &e),
                     MEDEMBED_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "gelu_new"));
    assert_int_equal(
        cfg("{\"model_type\":\"bert\",\"position_embedding_type\":\"relative_key\"," BASE "}", &c,
            &e),
        MEDEMBED_ERR_UNSUPPORTED);
    assert_int_equal(cfg("{\"model_type\":\"bert\",\"vocab_size\":100,\"hidden_size\":9,"
                         "\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                         "\"intermediate_size\":16}",
                         &c, &e),
                     MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "not divisible"));
    assert_int_equal(cfg("{\"model_type\":\"bert\",\"vocab_size\":100,\"hidden_size\":8,"
                         "\"num_attention_heads\":2,\"intermediate_size\":16}",
                         &c, &e),
                     MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "num_hidden_layers"));
    assert_int_equal(cfg("{\"model_type\":\"bert\",\"vocab_size\":\"x\",\"hidden_size\":8,"
                         "\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                         "\"intermediate_size\":16}",
                         &c, &e),
                     MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "vocab_size"));
    assert_int_equal(cfg("{\"model_type\":\"bert\",\"layer_norm_eps\":-1," BASE "}", &c, &e),
                     MEDEMBED_ERR_FORMAT);
    assert_int_equal(cfg("{\"model_type\":\"bert\",\"num_hidden_layers\":0,\"vocab_size\":100,"
                         "\"hidden_size\":8,\"num_attention_heads\":2,\"intermediate_size\":16}",
                         &c, &e),
                     MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "outside the allowed range"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),       cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bad_entries), cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_map_read),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
