/*
 * wordpiece.h - the token table (id <-> string) and WordPiece greedy
 * longest-match-first, as Hugging Face `tokenizers` models/wordpiece does it.
 *
 * Strings live in one pool; token -> id is an open-addressing hash table
 * (linear probing, load <= 1/4). A second table indexes the continuation
 * tokens ("##ing") by their text after the prefix, so WordPiece looks up
 * prefix + piece without building the string. Lookups never allocate.
 */
#ifndef ME_TOK_WORDPIECE_H
#define ME_TOK_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

#define ME_VOCAB_HOLE UINT32_MAX

typedef struct me_vslot {
    uint32_t tag; /* high bits of the hash, to skip most string compares */
    int32_t id;   /* -1: empty */
} me_vslot;

typedef struct me_vocab {
    char *pool; /* every token string, each NUL-terminated */
    size_t pool_len, pool_cap;
    uint32_t *off;  /* (cap_ids) pool offset of each id's string */
    uint32_t *len;  /* (cap_ids) byte length, ME_VOCAB_HOLE if no token has the id */
    uint8_t *model; /* (cap_ids) 1 if the id is in the WordPiece model vocab */
    int32_t n_ids;  /* largest id + 1 */
    int32_t cap_ids;
    int32_t n_model; /* model vocab entries (HF get_vocab_size()) */

    me_vslot *full; /* model token -> id */
    size_t full_mask;
    me_vslot *cont; /* model token minus prefix -> id, for tokens with the prefix */
    size_t cont_mask;
    size_t max_full, max_cont; /* longest key in bytes, in each table */

    char prefix[64]; /* continuing_subword_prefix, "##" */
    size_t prefix_len;
} me_vocab;

/* Prepares an empty vocab for about n_hint model tokens. */
int me_vocab_init(me_vocab *v, size_t n_hint, const char *prefix, size_t prefix_len, me_err *e);
void me_vocab_free(me_vocab *v);

/* Adds a model token with this id. A string already present moves to the
 * new id and its old id becomes a hole (vocab.txt semantics: the later line
 * wins). An id already taken is an error unless replace_ok: the caller's
 * message names the file. Returns MEDEMBED_OK, _ERR_FORMAT (id taken:
 * *other_id gets the holder) or _ERR_NOMEM. */
int me_vocab_add_model(me_vocab *v, const char *s, size_t len, int32_t id, int32_t *other_id,
                       me_err *e);

/* Records the string of an added token whose id is outside the model vocab. */
int me_vocab_set_added(me_vocab *v, const char *s, size_t len, int32_t id, me_err *e);

/* Builds the continuation table once every model token is in. */
int me_vocab_finish(me_vocab *v, me_err *e);

/* Model token -> id, or -1. */
int32_t me_vocab_find(const me_vocab *v, const char *s, size_t len);

/* Id -> NUL-terminated string, or NULL for a hole / out of range. */
const char *me_vocab_str(const me_vocab *v, int32_t id);

/* Appends the WordPiece ids of one word to out: w holds n_ch characters in
 * UTF-8, bounds[i] is the byte offset of character i and bounds[n_ch] the
 * length. A word with any unmatched rest gives a single unk_id. hash is
 * scratch room for n_ch + 1 values. */
int me_wordpiece(const me_vocab *v, const uint8_t *w, const uint32_t *bounds, size_t n_ch,
                 int32_t unk_id, uint64_t *hash, me_ids *out, me_err *e);

/* Appends one id, growing out. */
int me_ids_push(me_ids *out, int32_t id, me_err *e);

#endif
