/* fuzz_safetensors.c - libFuzzer target: arbitrary bytes as a safetensors
 * image. The parser must return an error or a table whose every tensor lies
 * inside the buffer with a consistent size. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    me_st_file f;
    me_err e;
    if (me_st_parse(data, size, "fuzz", &f, &e) != MEDEMBED_OK)
        return 0;
    for (int32_t i = 0; i < f.n_tensors; i++) {
        const me_st_tensor *t = &f.tensors[i];
        assert(t->data >= data && t->data + t->n_bytes <= data + size);
        assert((int64_t)t->n_bytes == t->numel * (int64_t)me_st_dtype_size(t->dtype));
        assert(me_st_find(&f, t->name) == t);
    }
    me_st_close(&f);
    return 0;
}
