/* fuzz_config.c - libFuzzer target: arbitrary bytes as config.json. Must
 * either fail with a message or yield a config that passes its invariants. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "model/config.h"
#include "util/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = NULL;
    me_err e;
    if (me_json_load_buf((const char *)data, size, "fuzz", &j, &e) != MEDEMBED_OK)
        return 0;
    me_config c;
    memset(&c, 0, sizeof c);
    if (me_config_parse_bert(j, "fuzz", &c, &e) == MEDEMBED_OK) {
        assert(c.hidden > 0 && c.n_heads > 0 && c.hidden % c.n_heads == 0);
        assert(c.n_layers > 0 && c.ffn > 0 && c.vocab_size > 0 && c.max_pos >= 2);
        assert(c.ln_eps > 0 && c.ln_eps < 1);
        assert(c.kind == MEDEMBED_KIND_EMBEDDER ||
               (c.kind == MEDEMBED_KIND_CROSS_ENCODER && c.num_labels >= 1 &&
                c.num_labels <= 65536 && c.type_vocab >= 2 && c.activation >= ME_ACT_IDENTITY &&
                c.activation <= ME_ACT_TANH));
    }
    json_decref(j);
    return 0;
}
