/*
 * resume.c - the check of an embed JSONL record for --resume (resume.h).
 */
#include "resume.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRE "{\"id\": "
#define MID ", \"embedding\": ["

int cli_resume_record(const char *line, size_t len, char **id, char *why, size_t why_len)
{
    *id = NULL;
    json_error_t je;
    json_t *o = json_loadb(line, len, 0, &je);
    int rc = 1;
    const char *mid = NULL;
    if (!json_is_object(o)) {
        snprintf(why, why_len, "not a JSON object");
    } else if (!json_object_get(o, "id") || !json_is_array(json_object_get(o, "embedding"))) {
        snprintf(why, why_len, "no \"id\" and \"embedding\"");
    } else if (len < strlen(PRE) || memcmp(line, PRE, strlen(PRE)) != 0) {
        snprintf(why, why_len, "not in the layout `medembed embed` writes");
    } else {
        /* the id's raw text, what an input record's id_json must equal: up
         * to the first MID whose prefix parses as the object's id (an id
         * that is itself an object may hold the same characters) */
        const char *s = line + strlen(PRE), *end = line + len;
        json_t *want = json_object_get(o, "id");
        while ((mid = memmem(s, (size_t)(end - s), MID, strlen(MID))) != NULL) {
            size_t n = (size_t)(mid - (line + strlen(PRE)));
            json_t *v = json_loadb(line + strlen(PRE), n, JSON_DECODE_ANY, &je);
            int same = v && json_equal(v, want);
            json_decref(v);
            if (same) {
                *id = malloc(n + 1);
                if (*id) {
                    memcpy(*id, line + strlen(PRE), n);
                    (*id)[n] = 0;
                    rc = 0;
                }
                break;
            }
            s = mid + 1;
        }
        if (rc)
            snprintf(why, why_len, !mid ? "not in the layout `medembed embed` writes"
                                                : "out of memory");
    }
    json_decref(o);
    return rc;
}
