/*
 * fuzz_tokenizer.c - libFuzzer target: encodes the input bytes with several
 * flag / max_tokens combinations and checks the encode invariants:
 * [CLS] first, [SEP] last, every id a token of the vocab, n <= max_tokens,
 * truncation = prefix of the full encoding + [SEP], errors only for invalid
 * UTF-8 under ME_TOK_STRICT_UTF8.
 *
 * The tokenizer comes from $MEDEMBED_FUZZ_TOKENIZER_DIR, else
 * ../shared/reference/bert-base-uncased (run from the repo root), else a
 * tiny built-in vocab.txt written to a temp dir.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *       $(pkg-config --cflags libutf8proc jansson) tests/fuzz/fuzz_tokenizer.c \
 *       src/tokenizer/\*.c src/util/\*.c $(pkg-config --libs libutf8proc jansson) -lm -o fz
 *   mkdir -p /tmp/fz_new && ./fz -max_total_time=30 /tmp/fz_new tests/fuzz/corpus/tokenizer
 *   (new units go to the first folder, so the checked-in seeds stay small)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer/tokenizer.h"

static me_tokenizer *g_tok;
static char g_tmp[64];

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "invariant failed: %s\n", what);
        abort();
    }
}

static void remove_tmp(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/vocab.txt", g_tmp);
    unlink(p);
    rmdir(g_tmp);
}

static me_tokenizer *builtin_tokenizer(void)
{
    static const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\npatient\n##s\n##ing\n"
                                "a\n##a\nb\n##b\n,\n.\n!\n(\n)\n-\n\xe4\xb8\xad\n\xce\xb1\n"
                                "cafe\nmg\n##g\n1\n##1\n";
    snprintf(g_tmp, sizeof g_tmp, "/tmp/me_fuzz_tok_XXXXXX");
    if (!mkdtemp(g_tmp))
        return NULL;
    atexit(remove_tmp);
    char p[128];
    snprintf(p, sizeof p, "%s/vocab.txt", g_tmp);
    FILE *f = fopen(p, "wb");
    if (!f)
        return NULL;
    fwrite(vocab, 1, sizeof vocab - 1, f);
    fclose(f);
    me_tokenizer *t = NULL;
    me_err e;
    if (me_tokenizer_load(g_tmp, &t, &e) != MEDEMBED_OK) {
        fprintf(stderr, "built-in vocab: %s\n", e.msg);
        return NULL;
    }
    return t;
}

static void init(void)
{
    const char *dir = getenv("MEDEMBED_FUZZ_TOKENIZER_DIR");
    me_err e;
    if (!dir || !*dir)
        dir = "../shared/reference/bert-base-uncased";
    if (me_tokenizer_load(dir, &g_tok, &e) != MEDEMBED_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s; using the built-in vocab\n", e.msg);
        g_tok = builtin_tokenizer();
    }
    check(g_tok != NULL, "a tokenizer loads");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_tok)
        init();
    static const uint32_t flag_sets[] = {0, ME_TOK_STRICT_UTF8, ME_TOK_PY_LOWER,
                                         ME_TOK_STRICT_UTF8 | ME_TOK_PY_LOWER};
    static const int32_t maxes[] = {0, 2, 3, 16, 512};
    const me_tokenizer *t = g_tok;
    int32_t cls = me_tokenizer_cls_id(t);
    int32_t sep = me_tokenizer_sep_id(t);
    int32_t vsz = me_tokenizer_vocab_size(t);
    me_ids full = {0};
    me_ids ids = {0};
    me_tok_scratch s = {0};
    me_err e;

    for (size_t fi = 0; fi < sizeof flag_sets / sizeof flag_sets[0]; fi++) {
        uint32_t flags = flag_sets[fi];
        int32_t n_full = -1;
        int32_t bad = -1;
        int rc = me_tokenizer_encode_scratch(t, &s, (const char *)data, size, 0, flags, &full,
                                             &n_full, &bad, &e);
        if (rc != MEDEMBED_OK) {
            check(rc == MEDEMBED_ERR_ENCODING && (flags & ME_TOK_STRICT_UTF8) != 0,
                  "only strict mode fails, with ERR_ENCODING");
            continue;
        }
        check(full.n >= 2 && full.n == n_full, "n >= 2 and n_untruncated = n");
        check(bad >= 0 && (bad == 0 || !(flags & ME_TOK_STRICT_UTF8)), "invalid count");
        check(full.ids[0] == cls && full.ids[full.n - 1] == sep, "[CLS] ... [SEP]");
        for (int32_t i = 0; i < full.n; i++)
            check(full.ids[i] >= 0 && full.ids[i] < vsz && me_tokenizer_token(t, full.ids[i]),
                  "ids are tokens of the vocab");
        for (size_t mi = 1; mi < sizeof maxes / sizeof maxes[0]; mi++) {
            int32_t max = maxes[mi];
            int32_t n_un = -1;
            rc = me_tokenizer_encode(t, (const char *)data, size, max, flags, &ids, &n_un, NULL,
                                     &e);
            check(rc == MEDEMBED_OK, "truncated encode succeeds");
            check(n_un == full.n, "n_untruncated is the full count");
            check(ids.n <= max && ids.n == (full.n < max ? full.n : max), "n = min(full, max)");
            check(ids.ids[0] == cls && ids.ids[ids.n - 1] == sep, "truncated [CLS] ... [SEP]");
            check(memcmp(ids.ids, full.ids, (size_t)(ids.n - 1) * sizeof *ids.ids) == 0,
                  "truncation keeps the first pieces");
        }
    }
    me_ids_free(&full);
    me_ids_free(&ids);
    me_tok_scratch_free(&s);
    return 0;
}
