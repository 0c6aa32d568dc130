/*
 * json.h - jansson helpers: bounded loading with file:line:col messages and
 * typed field getters that name the file and key on error.
 */
#ifndef ME_JSON_H
#define ME_JSON_H

#include <jansson.h>
#include <stdint.h>

#include "util/error.h"

/* Cap on any JSON file we parse (tokenizer.json of a large vocab is ~10 MB). */
#define ME_JSON_MAX_BYTES ((size_t)64 << 20)

/* Loads path as a JSON object. Missing file -> MEDEMBED_ERR_NOT_FOUND;
 * syntax error / duplicate keys / non-object -> MEDEMBED_ERR_FORMAT. */
int me_json_load_file(const char *path, json_t **out, me_err *e);

/* Parses a buffer (for fuzzing and safetensors headers). `what` names the
 * source in messages. */
int me_json_load_buf(const char *buf, size_t len, const char *what, json_t **out, me_err *e);

/* Integer field in [lo, hi]. Missing: *out = def, unless def_missing_is_error. */
int me_json_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t def,
                int required, const char *what, int64_t *out, me_err *e);
/* Number field (int or real). */
int me_json_num(const json_t *obj, const char *key, double def, int required, const char *what,
                double *out, me_err *e);
/* Bool field; missing -> def. */
int me_json_bool(const json_t *obj, const char *key, int def, const char *what, int *out,
                 me_err *e);
/* String field or NULL if missing/null; the pointer lives as long as obj. */
int me_json_str(const json_t *obj, const char *key, int required, const char *what,
                const char **out, me_err *e);

#endif
