/*
 * identity.h - the one identity of a model (medembed_model_fingerprint):
 * what the index records and checks, and what the pack cache's key is
 * built on. It changes whenever any input changes the vectors:
 *   - config.json (the architecture and its sizes);
 *   - the tokenizer files present (tokenizer.json, vocab.txt,
 *     tokenizer_config.json, special_tokens_map.json, added_tokens.json);
 *   - the sentence-transformers settings as loaded: pooling, Normalize,
 *     include_prompt, max_seq_length, do_lower_case, prompts and the
 *     default prompt name;
 *   - every safetensors header and every byte of tensor data.
 * The compute dtype, the kernels and the max_length load option are not
 * part of it: they are settings of one load, reported beside it.
 */
#ifndef ME_IDENTITY_H
#define ME_IDENTITY_H

#include <stdint.h>

typedef struct medembed_model medembed_model;

/* At load, after config, tokenizer and weights: the digest of everything
 * but the tensor data (m->files_digest), which the pack cache keys on with
 * the weight files' stat. Reads the small files of dir. */
void me_identity_files(medembed_model *m, const char *dir);

/* The identity, 64 hex chars: computed on first use (the tensor data of a
 * base model, ~440 MB, is summed in well under a second) and kept in m.
 * Thread-safe. */
const char *me_identity(const medembed_model *m);

#endif
