/*
 * config.h - what a model folder says about itself: config.json (BERT
 * hyper-parameters) and the sentence-transformers files (modules.json,
 * 1_Pooling/config.json, sentence_bert_config.json,
 * config_sentence_transformers.json).
 */
#ifndef ME_CONFIG_H
#define ME_CONFIG_H

#include <jansson.h>
#include <stdint.h>

#include "util/error.h"

typedef struct me_config {
    /* config.json */
    int32_t vocab_size;
    int32_t hidden;      /* hidden_size */
    int32_t n_layers;    /* num_hidden_layers */
    int32_t n_heads;     /* num_attention_heads */
    int32_t ffn;         /* intermediate_size */
    int32_t max_pos;     /* max_position_embeddings */
    int32_t type_vocab;  /* type_vocab_size */
    double ln_eps;       /* layer_norm_eps */
    char architecture[64];
    int32_t kind;        /* enum medembed_model_kind, from architectures[0] */
    int32_t num_labels;  /* cross-encoder: len(id2label), else num_labels, else 2 (as
                            transformers' PretrainedConfig); 0 for embedders */
    int32_t activation;  /* cross-encoder score activation: me_activation */

    /* sentence-transformers */
    int32_t pooling;        /* medembed_pooling */
    int32_t normalize;      /* a Normalize module follows pooling */
    int32_t include_prompt; /* 1_Pooling include_prompt (default true) */
    int32_t max_seq_length; /* 0 if unset */
    int32_t do_lower_case;  /* sentence_bert_config: Python str.lower() before tokenizing */
    int32_t has_st;         /* modules.json present */

    /* prompts: name -> text, from config_sentence_transformers.json */
    json_t *prompts;            /* object, owned (never NULL after load) */
    char *default_prompt_name;  /* or NULL */
} me_config;

/* The function a cross-encoder applies to its logits (sentence-transformers'
 * CrossEncoder default_activation_function). */
typedef enum me_activation {
    ME_ACT_IDENTITY = 0,
    ME_ACT_SIGMOID = 1,
    ME_ACT_TANH = 2
} me_activation;

/* Loads every config file of dir. Unsupported architectures or settings are
 * MEDEMBED_ERR_UNSUPPORTED with a message naming the file and the field. */
int me_config_load(const char *dir, me_config *c, me_err *e);

/* Parses config.json content alone (for fuzzing). */
int me_config_parse_bert(const json_t *j, const char *what, me_config *c, me_err *e);

void me_config_free(me_config *c);

const char *me_pooling_name(int32_t pooling);
/* "f32", "bf16" or "int8" for a medembed_dtype (anything else: "f32"). */
const char *me_dtype_name(int32_t dtype);

#endif
