/*
 * filter.c - metadata filters.
 *
 * A filter is "FIELD OP VALUE" ("year>=2015", "meshes=Humans"). Documents'
 * metadata objects are flattened at insert time into attribute rows
 * (doc, key, num, str) held in an indexed SQLite table, one row per
 * top-level scalar and per scalar element of a top-level array. A filter
 * then becomes one indexed range query that yields the allowed documents
 * before the search starts, and the search (flat or HNSW) considers only
 * those: filtering happens during the search, so k hits come back whenever
 * k documents match (post-filtering a top-k list cannot promise that).
 */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/index.h"

static int parse_number(const char *s, double *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!*s)
        return 0;
    char *end = NULL;
    double v = strtod(s, &end);
    while (end && isspace((unsigned char)*end))
        end++;
    if (!end || *end || !isfinite(v))
        return 0;
    /* strtod accepts "inf", "nan" and hex; only plain decimals count. */
    for (const char *p = s; p < end; p++)
        if (isalpha((unsigned char)*p) && *p != 'e' && *p != 'E')
            return 0;
    *out = v;
    return 1;
}

int me_filter_parse(const char *expr, me_filter *f, me_err *e)
{
    memset(f, 0, sizeof *f);
    RETURN_ERROR_IF(!expr, e, MEDEMBED_ERR_ARG, "filter: NULL expression");
    const char *p = expr;
    while (isspace((unsigned char)*p))
        p++;
    const char *op = p;
    while (*op && !strchr("=!<>", *op))
        op++;
    RETURN_ERROR_IF(!*op, e, MEDEMBED_ERR_ARG,
                    "filter \"%s\": no operator (use FIELD=VALUE, !=, <, <=, > or >=)", expr);
    const char *fe = op;
    while (fe > p && isspace((unsigned char)fe[-1]))
        fe--;
    size_t flen = (size_t)(fe - p);
    RETURN_ERROR_IF(flen == 0, e, MEDEMBED_ERR_ARG, "filter \"%s\": no field name before the "
                    "operator", expr);
    RETURN_ERROR_IF(flen >= sizeof f->field, e, MEDEMBED_ERR_ARG,
                    "filter \"%s\": field name longer than %zu bytes", expr,
                    sizeof f->field - 1);
    memcpy(f->field, p, flen);
    for (size_t i = 0; i < flen; i++)
        RETURN_ERROR_IF(isspace((unsigned char)f->field[i]), e, MEDEMBED_ERR_ARG,
                        "filter \"%s\": space inside the field name", expr);
    const char *v;
    if (op[0] == '=' && op[1] == '=') {
        f->op = ME_FOP_EQ;
        v = op + 2;
    } else if (op[0] == '=') {
        f->op = ME_FOP_EQ;
        v = op + 1;
    } else if (op[0] == '!' && op[1] == '=') {
        f->op = ME_FOP_NE;
        v = op + 2;
    } else if (op[0] == '<' && op[1] == '=') {
        f->op = ME_FOP_LE;
        v = op + 2;
    } else if (op[0] == '>' && op[1] == '=') {
        f->op = ME_FOP_GE;
        v = op + 2;
    } else if (op[0] == '<') {
        f->op = ME_FOP_LT;
        v = op + 1;
    } else if (op[0] == '>') {
        f->op = ME_FOP_GT;
        v = op + 1;
    } else {
        return me_err_set(e, MEDEMBED_ERR_ARG, "filter \"%s\": unknown operator at \"%s\"", expr,
                          op);
    }
    RETURN_ERROR_IF(*v && strchr("=!<>", *v), e, MEDEMBED_ERR_ARG,
                    "filter \"%s\": unknown operator at \"%s\"", expr, op);
    while (isspace((unsigned char)*v))
        v++;
    size_t vlen = strlen(v);
    while (vlen && isspace((unsigned char)v[vlen - 1]))
        vlen--;
    int quoted = vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"';
    if (quoted) {
        v++;
        vlen -= 2;
    }
    RETURN_ERROR_IF(!quoted && vlen == 0, e, MEDEMBED_ERR_ARG,
                    "filter \"%s\": no value after the operator", expr);
    RETURN_ERROR_IF(vlen >= sizeof f->str, e, MEDEMBED_ERR_ARG,
                    "filter \"%s\": value longer than %zu bytes", expr, sizeof f->str - 1);
    memcpy(f->str, v, vlen);
    f->str[vlen] = 0;
    RETURN_ERROR_IF(memchr(v, 0, vlen) != NULL, e, MEDEMBED_ERR_ARG, "filter: NUL in value");
    if (!quoted)
        f->numeric = parse_number(f->str, &f->num);
    return MEDEMBED_OK;
}

const char *me_filter_op_sql(me_filter_op op)
{
    switch (op) {
    case ME_FOP_EQ:
        return "=";
    case ME_FOP_NE:
        return "!=";
    case ME_FOP_LT:
        return "<";
    case ME_FOP_LE:
        return "<=";
    case ME_FOP_GT:
        return ">";
    default:
        return ">=";
    }
}

static int emit_scalar(const char *key, json_t *v, me_attr_emit_fn emit, void *arg)
{
    char buf[64];
    double num;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (parse_number(s, &num))
            return emit(arg, key, &num, s);
        return emit(arg, key, NULL, s);
    }
    if (json_is_integer(v)) {
        num = (double)json_integer_value(v);
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return emit(arg, key, &num, buf);
    }
    if (json_is_real(v)) {
        num = json_real_value(v);
        snprintf(buf, sizeof buf, "%.17g", num);
        return emit(arg, key, &num, buf);
    }
    if (json_is_boolean(v))
        return emit(arg, key, NULL, json_is_true(v) ? "true" : "false");
    return MEDEMBED_OK; /* null, nested objects: not filterable */
}

int me_attrs_from_json(const char *json, me_attr_emit_fn emit, void *arg, me_err *e)
{
    if (!json)
        return MEDEMBED_OK;
    json_error_t je;
    json_t *j = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    RETURN_ERROR_IF(!j, e, MEDEMBED_ERR_ARG, "metadata: invalid JSON at column %d: %s",
                    je.column, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return me_err_set(e, MEDEMBED_ERR_ARG, "metadata must be a JSON object");
    }
    const char *key;
    json_t *v;
    int rc = MEDEMBED_OK;
    json_object_foreach(j, key, v)
    {
        if (rc != MEDEMBED_OK)
            break;
        if (json_is_array(v)) {
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x)
            {
                rc = emit_scalar(key, x, emit, arg);
                if (rc != MEDEMBED_OK)
                    break;
            }
        } else {
            rc = emit_scalar(key, v, emit, arg);
        }
    }
    json_decref(j);
    if (rc != MEDEMBED_OK)
        return me_err_set(e, rc, "cannot store the metadata attributes");
    return MEDEMBED_OK;
}
