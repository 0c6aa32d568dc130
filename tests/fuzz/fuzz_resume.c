/*
 * fuzz_resume.c - libFuzzer target for the record check behind
 * `embed --resume` (tools/cli/resume.c, included whole: it lives with the
 * CLI, not in the library).
 *
 * The input is the last line of a JSONL output, torn or foreign. Beyond
 * "no crash", an accepted line must be a JSON object with an "id" and an
 * "embedding" array, and the id text handed back must parse as that id.
 */
#include <stdint.h>
#include <stdlib.h>

#include "../../tools/cli/resume.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *id = NULL;
    char why[200];
    why[0] = 0;
    if (cli_resume_record((const char *)data, size, &id, why, sizeof why) == 0) {
        json_t *o = json_loadb((const char *)data, size, 0, NULL);
        json_t *v = json_loads(id, JSON_DECODE_ANY, NULL);
        if (!json_is_object(o) || !json_is_array(json_object_get(o, "embedding")) || !v ||
            !json_equal(v, json_object_get(o, "id")))
            abort();
        json_decref(v);
        json_decref(o);
        free(id);
    } else if (!why[0] || id) {
        abort(); /* every refusal says why and hands back nothing */
    }
    return 0;
}
