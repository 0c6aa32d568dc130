/* json.c - jansson wrappers that turn every failure into a message naming
 * the file, the key and the value found. */
#include "util/json.h"

#include <stdlib.h>
#include <string.h>

#include "util/file.h"

int me_json_load_buf(const char *buf, size_t len, const char *what, json_t **out, me_err *e)
{
    json_error_t je;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!j)
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s",
                          what, je.line, je.column, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: expected a JSON object", what);
    }
    *out = j;
    return MEDEMBED_OK;
}

int me_json_load_file(const char *path, json_t **out, me_err *e)
{
    char *buf = NULL;
    size_t len = 0;
    FORWARD_IF_ERROR(me_file_read(path, ME_JSON_MAX_BYTES, &buf, &len, e));
    int rc = me_json_load_buf(buf, len, path, out, e);
    free(buf);
    return rc;
}

int me_json_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t def,
                int required, const char *what, int64_t *out, me_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        RETURN_ERROR_IF(required, e, MEDEMBED_ERR_FORMAT, "%s: missing required field \"%s\"",
                        what, key);
        *out = def;
        return MEDEMBED_OK;
    }
    int64_t x;
    if (json_is_integer(v)) {
        x = (int64_t)json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) >= -9e15 && json_real_value(v) <= 9e15 &&
               json_real_value(v) == (double)(int64_t)json_real_value(v)) {
        /* Range-checked before the cast: out-of-range double -> int is UB. */
        x = (int64_t)json_real_value(v);
    } else {
        return me_err_set(e, MEDEMBED_ERR_FORMAT, "%s: field \"%s\" must be an integer", what,
                          key);
    }
    RETURN_ERROR_IF(x < lo || x > hi, e, MEDEMBED_ERR_FORMAT,
                    "%s: field \"%s\" = %lld is outside the allowed range [%lld, %lld]", what, key,
                    (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return MEDEMBED_OK;
}

int me_json_num(const json_t *obj, const char *key, double def, int required, const char *what,
                double *out, me_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        RETURN_ERROR_IF(required, e, MEDEMBED_ERR_FORMAT, "%s: missing required field \"%s\"",
                        what, key);
        *out = def;
        return MEDEMBED_OK;
    }
    RETURN_ERROR_IF(!json_is_number(v), e, MEDEMBED_ERR_FORMAT,
                    "%s: field \"%s\" must be a number", what, key);
    *out = json_number_value(v);
    return MEDEMBED_OK;
}

int me_json_bool(const json_t *obj, const char *key, int def, const char *what, int *out,
                 me_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return MEDEMBED_OK;
    }
    RETURN_ERROR_IF(!json_is_boolean(v), e, MEDEMBED_ERR_FORMAT,
                    "%s: field \"%s\" must be true or false", what, key);
    *out = json_is_true(v);
    return MEDEMBED_OK;
}

int me_json_str(const json_t *obj, const char *key, int required, const char *what,
                const char **out, me_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        RETURN_ERROR_IF(required, e, MEDEMBED_ERR_FORMAT, "%s: missing required field \"%s\"",
                        what, key);
        *out = NULL;
        return MEDEMBED_OK;
    }
    RETURN_ERROR_IF(!json_is_string(v), e, MEDEMBED_ERR_FORMAT,
                    "%s: field \"%s\" must be a string", what, key);
    *out = json_string_value(v);
    return MEDEMBED_OK;
}
