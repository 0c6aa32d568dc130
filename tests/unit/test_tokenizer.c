/*
 * test_tokenizer.c - unit tests of src/tokenizer: a tiny WordPiece vocab
 * written to a temp dir (expected ids were produced by Hugging Face's Rust
 * tokenizers 0.22 on the same tokenizer.json), bad inputs and files, and
 * the golden files of ../shared through tokenizer.json and the vocab.txt
 * fallback.
 */
#include "test_util.h"

#include <jansson.h>
#include <time.h>
#include <unistd.h>

#include "tokenizer/tokenizer.h"

/* ------------------------------------------------------------------------ */
/* Fixture: a small tokenizer folder                                         */
/* ------------------------------------------------------------------------ */

static const char *const k_vocab[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "##af", "hello",
    "world", ",", "!", "a", "##a", "ab", "##c", "cafe", "中", "国",
    "ο", "##δ", "##ο", "##ς", "##σ", "σ", "α", "i", "[", "]",
    "sep", "—", "¿", "x", "##x", ".", "b", "##b", "ς", "##α",
    "<x>", "<y>", "foo", "hi",
};
#define N_VOCAB ((int)(sizeof k_vocab / sizeof k_vocab[0]))

enum { PAD = 0, UNK = 1, CLS = 2, SEP = 3, MASK = 4 };

static json_t *added_token(int id, const char *content, int special, int normalized)
{
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content,
                     "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", normalized,
                     "special", special);
}

/* The tokenizer.json of the fixture; normalizer NULL = lowercasing BERT. */
static json_t *fixture_json(json_t *normalizer)
{
    json_t *vocab = json_object();
    for (int i = 0; i < N_VOCAB; i++)
        json_object_set_new(vocab, k_vocab[i], json_integer(i));
    json_t *added = json_array();
    for (int i = 0; i < 5; i++)
        json_array_append_new(added, added_token(i, k_vocab[i], 1, 0));
    if (!normalizer)
        normalizer = json_pack("{s:s, s:b, s:b, s:n, s:b}", "type", "BertNormalizer",
                               "clean_text", 1, "handle_chinese_chars", 1, "strip_accents",
                               "lowercase", 1);
    json_t *pp = json_pack(
        "{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[], s:{s:{s:s, s:[i], s:[s]}, "
        "s:{s:s, s:[i], s:[s]}}}",
        "type", "TemplateProcessing", "single", "SpecialToken", "id", "[CLS]", "type_id", 0,
        "Sequence", "id", "A", "type_id", 0, "SpecialToken", "id", "[SEP]", "type_id", 0, "pair",
        "special_tokens", "[CLS]", "id", "[CLS]", "ids", CLS, "tokens", "[CLS]", "[SEP]", "id",
        "[SEP]", "ids", SEP, "tokens", "[SEP]");
    json_t *model = json_pack("{s:s, s:s, s:s, s:i, s:o}", "type", "WordPiece", "unk_token",
                              "[UNK]", "continuing_subword_prefix", "##",
                              "max_input_chars_per_word", 100, "vocab", vocab);
    return json_pack("{s:s, s:n, s:n, s:o, s:o, s:{s:s}, s:o, s:n, s:o}", "version", "1.0",
                     "truncation", "padding", "added_tokens", added, "normalizer", normalizer,
                     "pre_tokenizer", "type", "BertPreTokenizer", "post_processor", pp,
                     "decoder", "model", model);
}

typedef struct fixture {
    char dir[64];
} fixture;

static void make_dir(fixture *f)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/me_tok_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
}

static void write_in(const fixture *f, const char *name, const char *text, size_t len)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    assert_int_equal(test_write_file(p, text, len), 0);
}

static void write_json(const fixture *f, const char *name, json_t *root)
{
    char *s = json_dumps(root, JSON_COMPACT);
    assert_non_null(s);
    write_in(f, name, s, strlen(s));
    free(s);
    json_decref(root);
}

static void remove_dir(fixture *f)
{
    static const char *const names[] = {"tokenizer.json", "vocab.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s", f->dir, names[i]);
        unlink(p);
    }
    rmdir(f->dir);
}

static me_tokenizer *load_ok(const char *dir)
{
    me_tokenizer *t = NULL;
    me_err e;
    e.msg[0] = 0;
    int rc = me_tokenizer_load(dir, &t, &e);
    if (rc != MEDEMBED_OK)
        fprintf(stderr, "load failed: %s\n", e.msg);
    assert_int_equal(rc, MEDEMBED_OK);
    return t;
}

static int load_status(const fixture *f, me_err *e)
{
    me_tokenizer *t = NULL;
    e->msg[0] = 0;
    int rc = me_tokenizer_load(f->dir, &t, e);
    me_tokenizer_free(t);
    return rc;
}

static me_tokenizer *fixture_tok(fixture *f, json_t *normalizer)
{
    make_dir(f);
    write_json(f, "tokenizer.json", fixture_json(normalizer));
    return load_ok(f->dir);
}

/* Encodes and compares with an expected list terminated by -1. */
static void expect_ids_flags(const me_tokenizer *t, const char *text, size_t len, uint32_t flags,
                             const int32_t *want)
{
    me_ids ids = {0};
    me_err e;
    int32_t n_full = -1;
    int rc = me_tokenizer_encode(t, text, len, 0, flags, &ids, &n_full, NULL, &e);
    if (rc != MEDEMBED_OK)
        fprintf(stderr, "encode failed: %s\n", e.msg);
    assert_int_equal(rc, MEDEMBED_OK);
    int32_t n = 0;
    while (want[n] >= 0)
        n++;
    int same = ids.n == n;
    for (int32_t i = 0; same && i < n; i++)
        same = ids.ids[i] == want[i];
    if (!same) {
        fprintf(stderr, "text \"%s\": got", text);
        for (int32_t i = 0; i < ids.n; i++)
            fprintf(stderr, " %d", ids.ids[i]);
        fprintf(stderr, "\n");
    }
    assert_true(same);
    assert_int_equal(n_full, n);
    me_ids_free(&ids);
}

#define EXPECT(t, text, ...)                                                                       \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__, -1};                                                 \
        expect_ids_flags((t), (text), strlen(text), 0, want_);                                     \
    } while (0)

#define EXPECT_FLAGS(t, text, flags, ...)                                                          \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__, -1};                                                 \
        expect_ids_flags((t), (text), strlen(text), (flags), want_);                               \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Pipeline behaviour on the fixture (ids verified with HF tokenizers)       */
/* ------------------------------------------------------------------------ */

static void test_wordpiece_greedy(void **state)
{
    (void)state;
    fixture f;
    me_tokenizer *t = fixture_tok(&f, NULL);
    EXPECT(t, "unaffable", CLS, 5, 6, 7, SEP); /* un ##aff ##able, not ##af */
    EXPECT(t, "unafable", CLS, 5, 8, 7, SEP);
    EXPECT(t, "abc", CLS, 15, 16, SEP);      /* ab ##c */
    EXPECT(t, "abcx", CLS, 15, 16, 34, SEP); /* ab ##c ##x */
    EXPECT(t, "abq", CLS, UNK, SEP);         /* one unmatched piece: one [UNK] */
    EXPECT(t, "hello abq world", CLS, 9, UNK, 10, SEP);
    me_tokenizer_free(t);
    remove_dir(&f);
}

static void test_word_length_limit(void **state)
{
    (void)state;
    fixture f;
    me_tokenizer *t = fixture_tok(&f, NULL);
    char w[102];
    me_ids ids = {0};
    me_err e;
    memset(w, 'a', sizeof w);
    /* 100 chars: a + 99 x ##a. */
    assert_int_equal(me_tokenizer_encode(t, w, 100, 0, 0, &ids, NULL, NULL, &e), MEDEMBED_OK);
    assert_int_equal(ids.n, 102);
    assert_int_equal(ids.ids[1], 13);
    assert_int_equal(ids.ids[100], 14);
    /* 101 chars: [UNK]. */
    assert_int_equal(me_tokenizer_encode(t, w, 101, 0, 0, &ids, NULL, NULL, &e), MEDEMBED_OK);
    assert_int_equal(ids.n, 3);
    assert_int_equal(ids.ids[1], UNK);
    /* Characters, not bytes: 100 x "α" (200 bytes) is one word of 100. */
    char g[2 * 101];
    for (int i = 0; i < 101; i++)
        memcpy(g + 2 * i, "\xce\xb1", 2);
    assert_int_equal(me_tokenizer_encode(t, g, 200, 0, 0, &ids, NULL, NULL, &e), MEDEMBED_OK);
    assert_int_equal(ids.n, 102);
    assert_int_equal(ids.ids[1], 26);
    assert_int_equal(ids.ids[2], 39);
    assert_int_equal(me_tokenizer_encode(t, g, 202, 0, 0, &ids, NULL, NULL, &e), MEDEMBED_OK);
    assert_int_equal(ids.n, 3);
    assert_int_equal(ids.ids[1], UNK);
    me_ids_free(&ids);
    me_tokenizer_free(t);
    remove_dir(&f);
}

static void test_punctuation_cjk(void **state)
{
    (void)state;
    fixture f;
    me_tokenizer *t = fixture_tok(&f, NULL);
    EXPECT(t, "hello,world!", CLS, 9, 11, 10, 12, SEP);
    EXPECT(t, "hello\xc2\xbfworld\xe2\x80\x94x", CLS, 9, 32, 10, 31, 33, SEP); /* ¿ — */
    EXPECT(t, "a\xe4\xb8\xad\xe5\x9b\xbd" "b", CLS, 13, 18, 19, 36, SEP);      /* a中国b */
    me_tokenizer_free(t);
    remove_dir(&f);
}

static void test_normalizer(void **state)
{
    (void)state;
    fixture f;
    me_tokenizer *t = fixture_tok(&f, NULL);
    EXPECT(t, "Caf\xc3\xa9 CAFE", CLS, 17, 17, SEP); /* accents stripped, lowercased */
    /* \x01 and U+200B removed, NUL removed, U+00A0 is a space. */
    const char ctl[] = "hel\x01lo a\xe2\x80\x8b" "b hel\0lo x\xc2\xa0x";
    const int32_t want[] = {CLS, 9, 15, 9, 33, 33, SEP, -1};
    expect_ids_flags(t, ctl, sizeof ctl - 1, 0, want);
    EXPECT(t, "\xc4\xb0", CLS, 27, SEP); /* İ -> i */
    EXPECT(t, "\xce\x9f\xce\x94\xce\x9f\xce\xa3", CLS, 20, 21, 22, 24, SEP); /* ΟΔΟΣ: ##σ */
    me_tokenizer_free(t);
    remove_dir(&f);
}

static void test_added_tokens_raw(void **state)
{
    (void)state;
    fixture f;
    me_tokenizer *t = fixture_tok(&f, NULL);
    EXPECT(t, "hello [SEP] world", CLS, 9, SEP, 10, SEP);
    EXPECT(t, "hello[SEP]world", CLS, 9, SEP, 10, SEP);
    /* Matched before lowercasing: "[sep]" is ordinary text. */
    EXPECT(t, "[sep] [SEP] [CLS][MASK]", CLS, 28, 30, 29, SEP, CLS, MASK, SEP);
    me_tokenizer_free(t);
    remove_dir(&f);
}

static void test_added_token_flags(void **state)
{
    (void)state;
    fixture f;
    make_dir(&f);
    json_t *root = fixture_json(NULL);
    json_t *added = json_object_get(root, "added_tokens");
    json_t *x = added_token(40, "<x>", 0, 0);
    json_object_set_new(x, "lstrip", json_true());
    json_t *y = added_token(41, "<y>", 0, 0);
    json_object_set_new(y, "rstrip", json_true());
    json_t *foo = added_token(42, "foo", 0, 0);
    json_object_set_new(foo, "single_word", json_true());
    json_array_append_new(added, x);
    json_array_append_new(added, y);
    json_array_append_new(added, foo);
    json_array_append_new(added, added_token(44, "Hi There", 0, 1)); /* normalized */
    write_json(&f, "tokenizer.json", root);
    me_tokenizer *t = load_ok(f.dir);
    EXPECT(t, "a <x>b", CLS, 13, 40, 36, SEP);
    EXPECT(t, "a  <x> b", CLS, 13, 40, 36, SEP);
    EXPECT(t, "a<y>  b", CLS, 13, 41, 36, SEP);
    EXPECT(t, "foo", CLS, 42, SEP);
    EXPECT(t, "xfoo", CLS, UNK, SEP); /* not a single word: "xfoo" goes to WordPiece */
    EXPECT(t, "foo.x", CLS, 42, 35, 33, SEP);
    EXPECT(t, "a foo b", CLS, 13, 42, 36, SEP);
    /* Normalized token: matched on the lowercased text, its id is vocab size. */
    EXPECT(t, "hi there", CLS, 44, SEP);
    EXPECT(t, "Hi There", CLS, 44, SEP);
    EXPECT(t, "HI   THERE", CLS, 43, UNK, SEP);
    EXPECT(t, "xhi there", CLS, 33, 44, SEP);
    assert_int_equal(me_tokenizer_vocab_size(t), 45);
    assert_string_equal(me_tokenizer_token(t, 44), "Hi There");
    assert_int_equal(me_tokenizer_find(t, "Hi There", 8), 44);
    me_tokenizer_free(t);
    remove_dir(&f);
}

static void test_truncation(void **state)
{
    (void)state;
    fixture f;
    me_tokenizer *t = fixture_tok(&f, NULL);
    me_ids ids = {0};
    me_err e;
    int32_t full = 0;
    const char *s = "hello , world !"; /* CLS 9 11 10 12 SEP: 6 ids */
    assert_int_equal(me_tokenizer_encode(t, s, strlen(s), 2, 0, &ids, &full, NULL, &e),
                     MEDEMBED_OK);
    assert_int_equal(ids.n, 2);
    assert_int_equal(full, 6);
    assert_int_equal(ids.ids[0], CLS);
    assert_int_equal(ids.ids[1], SEP);
    assert_int_equal(me_tokenizer_encode(t, s, strlen(s), 3, 0, &ids, &full, NULL, &e),
                     MEDEMBED_OK);
    assert_int_equal(ids.n, 3);
    assert_int_equal(ids.ids[1], 9);
    assert_int_equal(ids.ids[2], SEP);
    assert_int_equal(me_tokenizer_encode(t, s, strlen(s), 6, 0, &ids, &full, NULL, &e),
                     MEDEMBED_OK);
    assert_int_equal(ids.n, 6);
    assert_int_equal(ids.ids[4], 12);
    assert_int_equal(me_tokenizer_encode(t, s, strlen(s), 5, 0, &ids, &full, NULL, &e),
                     MEDEMBED_OK);
    assert_int_equal(ids.n, 5);
    assert_int_equal(ids.ids[3], 10);
    assert_int_equal(ids.ids[4], SEP);
    assert_int_equal(full, 6);
    assert_int_equal(me_tokenizer_encode(t, s, strlen(s), 1, 0, &ids, &full, NULL, &e),
                     MEDEMBED_ERR_ARG);
    assert_int_equal(me_tokenizer_encode(t, s, strlen(s), -3, 0, &ids, &full, NULL, &e),
                     MEDEMBED_ERR_ARG);
    me_ids_free(&ids);
    me_tokenizer_free(t);
    remove_dir(&f);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    fixture f;
    me_tokenizer *t = fixture_tok(&f, NULL);
    me_ids ids = {0};
    me_err e;
    int32_t bad = -1;
    /* One replacement; U+FFFD is then removed by clean_text: "ab" -> ab. */
    assert_int_equal(me_tokenizer_encode(t, "a\xff" "b", 3, 0, 0, &ids, NULL, &bad, &e),
                     MEDEMBED_OK);
    assert_int_equal(bad, 1);
    assert_int_equal(ids.n, 3);
    assert_int_equal(ids.ids[1], 15);
    /* Maximal subparts: E0 80 is two (80 cannot follow E0), F0 90 80 one
     * (truncated), C0 one, ED A0 80 (a surrogate) three. */
    const char s[] = "a\xe0\x80" "b\xf0\x90\x80" "c\xc0" "d\xed\xa0\x80";
    assert_int_equal(me_tokenizer_encode(t, s, sizeof s - 1, 0, 0, &ids, NULL, &bad, &e),
                     MEDEMBED_OK);
    assert_int_equal(bad, 2 + 1 + 1 + 3);
    /* A genuine U+FFFD is valid input: not counted, but removed. */
    assert_int_equal(
        me_tokenizer_encode(t, "a\xef\xbf\xbd" "b", 5, 0, 0, &ids, NULL, &bad, &e), MEDEMBED_OK);
    assert_int_equal(bad, 0);
    assert_int_equal(ids.n, 3);
    /* Strict mode: an error naming the byte offset. */
    e.msg[0] = 0;
    assert_int_equal(
        me_tokenizer_encode(t, "abc\xff", 4, 0, ME_TOK_STRICT_UTF8, &ids, NULL, &bad, &e),
        MEDEMBED_ERR_ENCODING);
    assert_non_null(strstr(e.msg, "offset 3"));
    assert_int_equal(me_tokenizer_encode(t, "abc", 3, 0, ME_TOK_STRICT_UTF8, &ids, NULL, &bad, &e),
                     MEDEMBED_OK);
    me_ids_free(&ids);
    me_tokenizer_free(t);
    remove_dir(&f);
}

static void test_py_lower(void **state)
{
    (void)state;
    fixture f;
    me_tokenizer *t = fixture_tok(&f, NULL);
    /* Final sigma: Σ after a cased letter and not before one -> ς. */
    EXPECT_FLAGS(t, "\xce\x9f\xce\x94\xce\x9f\xce\xa3", ME_TOK_PY_LOWER, CLS, 20, 21, 22, 23, SEP);
    EXPECT_FLAGS(t, "\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xce\x91", ME_TOK_PY_LOWER, CLS, 20, 21, 22,
                 23, 26, SEP); /* "ΟΔΟΣ Α": the space ends the word */
    EXPECT_FLAGS(t, "\xce\x9f\xce\x94\xce\x9f\xce\xa3\xce\x91", ME_TOK_PY_LOWER, CLS, 20, 21, 22,
                 24, 39, SEP); /* "ΟΔΟΣΑ": medial σ */
    EXPECT_FLAGS(t, "\xce\xa3", ME_TOK_PY_LOWER, CLS, 25, SEP);     /* lone Σ: σ */
    EXPECT_FLAGS(t, "\xc4\xb0", ME_TOK_PY_LOWER, CLS, 27, SEP);     /* İ -> i̇ -> i */
    /* The literal "[SEP]" is lowercased before matching: ordinary text. */
    EXPECT_FLAGS(t, "hello [SEP]", ME_TOK_PY_LOWER, CLS, 9, 28, 30, 29, SEP);
    EXPECT(t, "hello [SEP]", CLS, 9, SEP, SEP);
    me_tokenizer_free(t);
    remove_dir(&f);
}

static void test_empty_and_null(void **state)
{
    (void)state;
    fixture f;
    me_tokenizer *t = fixture_tok(&f, NULL);
    EXPECT(t, "", CLS, SEP);
    EXPECT(t, " \t\n", CLS, SEP);
    me_ids ids = {0};
    me_err e;
    assert_int_equal(me_tokenizer_encode(t, NULL, 0, 0, 0, &ids, NULL, NULL, &e), MEDEMBED_OK);
    assert_int_equal(ids.n, 2);
    assert_int_equal(me_tokenizer_encode(t, NULL, 5, 0, 0, &ids, NULL, NULL, &e),
                     MEDEMBED_ERR_ARG);
    assert_int_equal(me_tokenizer_encode(t, "x", 1, 0, 0x80, &ids, NULL, NULL, &e),
                     MEDEMBED_ERR_ARG);
    /* (size_t)-1: NUL-terminated. */
    assert_int_equal(me_tokenizer_encode(t, "hello", (size_t)-1, 0, 0, &ids, NULL, NULL, &e),
                     MEDEMBED_OK);
    assert_int_equal(ids.n, 3);
    me_ids_free(&ids);
    me_tokenizer_free(t);
    remove_dir(&f);
}

static void test_accessors_and_scratch(void **state)
{
    (void)state;
    fixture f;
    me_tokenizer *t = fixture_tok(&f, NULL);
    assert_int_equal(me_tokenizer_cls_id(t), CLS);
    assert_int_equal(me_tokenizer_sep_id(t), SEP);
    assert_int_equal(me_tokenizer_pad_id(t), PAD);
    assert_int_equal(me_tokenizer_unk_id(t), UNK);
    assert_int_equal(me_tokenizer_vocab_size(t), N_VOCAB);
    assert_string_equal(me_tokenizer_token(t, 6), "##aff");
    assert_null(me_tokenizer_token(t, N_VOCAB));
    assert_null(me_tokenizer_token(t, -1));
    assert_int_equal(me_tokenizer_find(t, "##able", 6), 7);
    assert_int_equal(me_tokenizer_find(t, "nope", 4), -1);

    me_tok_scratch s = {0};
    me_ids a = {0};
    me_ids b = {0};
    me_err e;
    const char *texts[] = {"unaffable hello", "a\xe4\xb8\xad", "", "Caf\xc3\xa9 , [SEP] x"};
    for (int rep = 0; rep < 3; rep++) {
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            size_t n = strlen(texts[i]);
            assert_int_equal(
                me_tokenizer_encode_scratch(t, &s, texts[i], n, 0, 0, &a, NULL, NULL, &e),
                MEDEMBED_OK);
            assert_int_equal(me_tokenizer_encode(t, texts[i], n, 0, 0, &b, NULL, NULL, &e),
                             MEDEMBED_OK);
            assert_int_equal(a.n, b.n);
            assert_memory_equal(a.ids, b.ids, (size_t)a.n * sizeof *a.ids);
        }
    }
    me_tok_scratch_free(&s);
    me_tok_scratch_free(NULL);
    me_ids_free(&a);
    me_ids_free(&b);
    me_ids_free(NULL);
    me_tokenizer_free(t);
    me_tokenizer_free(NULL);
    remove_dir(&f);
}

static void test_cased_normalizer(void **state)
{
    (void)state;
    fixture f;
    json_t *norm = json_pack("{s:s, s:b, s:b, s:n, s:b}", "type", "BertNormalizer", "clean_text",
                             1, "handle_chinese_chars", 0, "strip_accents", "lowercase", 0);
    me_tokenizer *t = fixture_tok(&f, norm);
    EXPECT(t, "hello Hello", CLS, 9, UNK, SEP);
    EXPECT(t, "a\xe4\xb8\xad", CLS, UNK, SEP); /* no CJK split: one word "a中" */
    EXPECT(t, "cafe caf\xc3\xa9", CLS, 17, UNK, SEP);
    me_tokenizer_free(t);
    remove_dir(&f);
}

/* ------------------------------------------------------------------------ */
/* vocab.txt fallback                                                        */
/* ------------------------------------------------------------------------ */

static void write_vocab_txt(const fixture *f, const char *eol)
{
    char buf[4096];
    size_t n = 0;
    for (int i = 0; i < N_VOCAB; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", k_vocab[i], eol);
    write_in(f, "vocab.txt", buf, n);
}

static void test_fallback(void **state)
{
    (void)state;
    fixture f;
    make_dir(&f);
    write_vocab_txt(&f, "\r\n");
    me_tokenizer *t = load_ok(f.dir); /* no config: BERT defaults */
    EXPECT(t, "Unaffable, hello [SEP] [sep]", CLS, 5, 6, 7, 11, 9, SEP, 28, 30, 29, SEP);
    assert_int_equal(me_tokenizer_vocab_size(t), N_VOCAB);
    me_tokenizer_free(t);

    const char *cfg = "{\"do_lower_case\": false, \"tokenizer_class\": \"BertTokenizer\","
                      " \"cls_token\": {\"content\": \"[CLS]\"}}";
    write_in(&f, "tokenizer_config.json", cfg, strlen(cfg));
    write_vocab_txt(&f, "\n");
    t = load_ok(f.dir);
    EXPECT(t, "hello Hello", CLS, 9, UNK, SEP);
    me_tokenizer_free(t);

    /* A repeated line: the later id wins. */
    const char *dup = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nhello";
    write_in(&f, "vocab.txt", dup, strlen(dup));
    t = load_ok(f.dir);
    EXPECT(t, "hello", CLS, 5, SEP);
    assert_null(me_tokenizer_token(t, 4));
    me_tokenizer_free(t);

    me_err e;
    const char *bad = "[UNK]\n\xff\n";
    write_in(&f, "vocab.txt", bad, strlen(bad));
    assert_int_equal(load_status(&f, &e), MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "vocab.txt"));

    write_vocab_txt(&f, "\n");
    const char *rob = "{\"tokenizer_class\": \"RobertaTokenizer\"}";
    write_in(&f, "tokenizer_config.json", rob, strlen(rob));
    assert_int_equal(load_status(&f, &e), MEDEMBED_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "RobertaTokenizer"));
    remove_dir(&f);
}

/* ------------------------------------------------------------------------ */
/* Bad files                                                                 */
/* ------------------------------------------------------------------------ */

static void expect_load_error(json_t *root, int status, const char *needle)
{
    fixture f;
    me_err e;
    make_dir(&f);
    write_json(&f, "tokenizer.json", root);
    assert_int_equal(load_status(&f, &e), status);
    if (!strstr(e.msg, needle) || !strstr(e.msg, "tokenizer.json"))
        fprintf(stderr, "message: %s\n", e.msg);
    assert_non_null(strstr(e.msg, needle));
    assert_non_null(strstr(e.msg, "tokenizer.json"));
    remove_dir(&f);
}

static void test_bad_files(void **state)
{
    (void)state;
    fixture f;
    me_err e;
    me_tokenizer *t = NULL;

    assert_int_equal(me_tokenizer_load("/nonexistent/me_tok", &t, &e), MEDEMBED_ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/me_tok/vocab.txt"));
    assert_null(t);
    assert_int_equal(me_tokenizer_load(NULL, &t, &e), MEDEMBED_ERR_ARG);

    make_dir(&f);
    const char *trunc = "{\n  \"model\": {\"type\": \"WordPiece\",\n  \"vocab\": {\"a\": 1,";
    write_in(&f, "tokenizer.json", trunc, strlen(trunc));
    assert_int_equal(load_status(&f, &e), MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "tokenizer.json:3:"));
    write_in(&f, "tokenizer.json", "[1, 2]", 6);
    assert_int_equal(load_status(&f, &e), MEDEMBED_ERR_FORMAT);
    /* Over the size cap (a sparse file: nothing is read). */
    char p[256];
    snprintf(p, sizeof p, "%s/tokenizer.json", f.dir);
    assert_int_equal(truncate(p, (off_t)65 << 20), 0);
    assert_int_equal(load_status(&f, &e), MEDEMBED_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "limit"));
    remove_dir(&f);

    json_t *r = fixture_json(NULL);
    json_object_set_new(json_object_get(r, "model"), "type", json_string("BPE"));
    expect_load_error(r, MEDEMBED_ERR_UNSUPPORTED, "\"BPE\"");

    r = fixture_json(NULL);
    json_object_set_new(json_object_get(r, "normalizer"), "type", json_string("NFKC"));
    expect_load_error(r, MEDEMBED_ERR_UNSUPPORTED, "\"NFKC\"");

    r = fixture_json(NULL);
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s}", "type", "ByteLevel"));
    expect_load_error(r, MEDEMBED_ERR_UNSUPPORTED, "\"ByteLevel\"");

    r = fixture_json(NULL);
    json_object_set_new(r, "post_processor", json_pack("{s:s}", "type", "RobertaProcessing"));
    expect_load_error(r, MEDEMBED_ERR_UNSUPPORTED, "\"RobertaProcessing\"");

    r = fixture_json(NULL);
    json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "zz",
                        json_integer(1 << 30));
    expect_load_error(r, MEDEMBED_ERR_FORMAT, "\"zz\"");

    r = fixture_json(NULL);
    json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "zz",
                        json_integer(-1));
    expect_load_error(r, MEDEMBED_ERR_FORMAT, "outside");

    r = fixture_json(NULL);
    json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "zz",
                        json_integer(6));
    expect_load_error(r, MEDEMBED_ERR_FORMAT, "id 6");

    r = fixture_json(NULL);
    json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "zz",
                        json_string("7"));
    expect_load_error(r, MEDEMBED_ERR_FORMAT, "not an integer");

    r = fixture_json(NULL);
    json_object_del(json_object_get(json_object_get(r, "model"), "vocab"), "[UNK]");
    expect_load_error(r, MEDEMBED_ERR_FORMAT, "unk_token");

    r = fixture_json(NULL);
    json_t *st = json_object_get(json_object_get(r, "post_processor"), "special_tokens");
    json_object_set_new(json_object_get(st, "[SEP]"), "ids", json_pack("[i]", 5000));
    expect_load_error(r, MEDEMBED_ERR_FORMAT, "5000");

    r = fixture_json(NULL);
    json_object_set_new(json_object_get(r, "normalizer"), "lowercase", json_string("yes"));
    expect_load_error(r, MEDEMBED_ERR_FORMAT, "lowercase");
}

/* ------------------------------------------------------------------------ */
/* Golden files from HF tokenizers (../shared)                               */
/* ------------------------------------------------------------------------ */

/* Checks every line of a golden file; returns the encode time in ms. */
static double check_golden(const me_tokenizer *t, const char *path, int *n_lines)
{
    size_t len = 0;
    char *buf = test_read_file(path, &len);
    assert_non_null(buf);
    me_ids ids = {0};
    me_tok_scratch s = {0};
    me_err e;
    int n = 0;
    int bad = 0;
    double ms = 0;
    char *line = buf;
    while (line < buf + len) {
        char *end = memchr(line, '\n', (size_t)(buf + len - line));
        if (!end)
            end = buf + len;
        if (end > line) {
            json_error_t je;
            json_t *o = json_loadb(line, (size_t)(end - line), JSON_ALLOW_NUL, &je);
            assert_non_null(o);
            json_t *text = json_object_get(o, "text");
            json_t *want = json_object_get(o, "ids");
            struct timespec a;
            struct timespec b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            int rc = me_tokenizer_encode_scratch(t, &s, json_string_value(text),
                                                 json_string_length(text), 0, 0, &ids, NULL,
                                                 NULL, &e);
            clock_gettime(CLOCK_MONOTONIC, &b);
            ms += (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
            assert_int_equal(rc, MEDEMBED_OK);
            int same = (size_t)ids.n == json_array_size(want);
            for (int32_t i = 0; same && i < ids.n; i++)
                same = ids.ids[i] == json_integer_value(json_array_get(want, (size_t)i));
            if (!same && ++bad <= 3)
                fprintf(stderr, "%s: line %d differs: %.200s\n", path, n + 1,
                        json_string_value(text));
            json_decref(o);
            n++;
        }
        line = end + 1;
    }
    me_ids_free(&ids);
    me_tok_scratch_free(&s);
    free(buf);
    assert_int_equal(bad, 0);
    *n_lines = n;
    return ms;
}

static void run_goldens(const char *dir, const char *how)
{
    char path[512];
    static const char *const files[] = {"golden/tokenizer/pubmedqa.jsonl",
                                        "golden/tokenizer/edge_cases.jsonl"};
    for (size_t i = 0; i < 2; i++)
        SKIP_WITHOUT_SHARED(path, files[i]);
    me_tokenizer *t = load_ok(dir);
    for (size_t i = 0; i < 2; i++) {
        test_shared_path(path, sizeof path, files[i]);
        int n = 0;
        double ms = check_golden(t, path, &n);
        fprintf(stderr, "    %s via %s: %d lines equal, encode %.1f ms\n", files[i], how, n, ms);
    }
    me_tokenizer_free(t);
}

static void test_golden_tokenizer_json(void **state)
{
    (void)state;
    char dir[512];
    SKIP_WITHOUT_SHARED(dir, "reference/bert-base-uncased/tokenizer.json");
    test_shared_path(dir, sizeof dir, "reference/bert-base-uncased");
    run_goldens(dir, "tokenizer.json");
}

static void test_golden_vocab_txt(void **state)
{
    (void)state;
    char src[512];
    SKIP_WITHOUT_SHARED(src, "reference/bert-base-uncased/vocab.txt");
    fixture f;
    make_dir(&f);
    static const char *const names[] = {"vocab.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (size_t i = 0; i < 3; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "reference/bert-base-uncased/%s", names[i]);
        test_shared_path(src, sizeof src, rel);
        size_t len = 0;
        char *b = test_read_file(src, &len);
        assert_non_null(b);
        write_in(&f, names[i], b, len);
        free(b);
    }
    run_goldens(f.dir, "vocab.txt");
    remove_dir(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wordpiece_greedy),
        cmocka_unit_test(test_word_length_limit),
        cmocka_unit_test(test_punctuation_cjk),
        cmocka_unit_test(test_normalizer),
        cmocka_unit_test(test_added_tokens_raw),
        cmocka_unit_test(test_added_token_flags),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_py_lower),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_accessors_and_scratch),
        cmocka_unit_test(test_cased_normalizer),
        cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_golden_tokenizer_json),
        cmocka_unit_test(test_golden_vocab_txt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
