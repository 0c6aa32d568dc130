/*
 * fuzz_tokenizer_json.c - libFuzzer target: the input bytes are written as
 * DIR/tokenizer.json and loaded. Loading must never crash: it returns a
 * status, and a tokenizer that loads must encode a few texts with
 * [CLS] ... [SEP] and in-range ids.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *       $(pkg-config --cflags libutf8proc jansson) tests/fuzz/fuzz_tokenizer_json.c \
 *       src/tokenizer/\*.c src/util/\*.c $(pkg-config --libs libutf8proc jansson) -lm -o fzj
 *   mkdir -p /tmp/fzj_new && ./fzj -max_total_time=30 /tmp/fzj_new tests/fuzz/corpus/tokenizer_json
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer/tokenizer.h"

static char g_dir[64];
static char g_path[128];

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "invariant failed: %s\n", what);
        abort();
    }
}

static void remove_tmp(void)
{
    unlink(g_path);
    rmdir(g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/me_fuzz_json_XXXXXX");
        check(mkdtemp(g_dir) != NULL, "mkdtemp");
        snprintf(g_path, sizeof g_path, "%s/tokenizer.json", g_dir);
        atexit(remove_tmp);
    }
    FILE *f = fopen(g_path, "wb");
    check(f != NULL, "temp file opens");
    check(fwrite(data, 1, size, f) == size, "temp file written");
    fclose(f);

    me_tokenizer *t = NULL;
    me_err e;
    e.msg[0] = 0;
    int rc = me_tokenizer_load(g_dir, &t, &e);
    if (rc != MEDEMBED_OK) {
        check(t == NULL, "no tokenizer on failure");
        check(rc < 0 && e.msg[0] != 0, "a failure has a status and a message");
        return 0;
    }
    static const char *const texts[] = {
        "",
        "Hello, world! [SEP] caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87",
        "unaffable \xce\xa3\xce\x9f\xce\xa3 a\xffz [CLS][MASK]",
    };
    me_ids ids = {0};
    int32_t vsz = me_tokenizer_vocab_size(t);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (uint32_t flags = 0; flags < 4; flags++) {
            rc = me_tokenizer_encode(t, texts[i], strlen(texts[i]), (int32_t)(4 * flags), flags,
                                     &ids, NULL, NULL, &e);
            if (rc != MEDEMBED_OK) {
                check(rc == MEDEMBED_ERR_ENCODING, "only invalid UTF-8 fails");
                continue;
            }
            check(ids.n >= 2, "n >= 2");
            check(ids.ids[0] == me_tokenizer_cls_id(t), "[CLS] first");
            check(ids.ids[ids.n - 1] == me_tokenizer_sep_id(t), "[SEP] last");
            for (int32_t k = 0; k < ids.n; k++)
                check(ids.ids[k] >= 0 && ids.ids[k] < vsz && me_tokenizer_token(t, ids.ids[k]),
                      "ids in range");
        }
    }
    me_ids_free(&ids);
    me_tokenizer_free(t);
    return 0;
}
