/* fuzz_packcache.c - libFuzzer target: arbitrary bytes as a pack cache file
 * (model/packcache.h). The key and layer count it must have are taken from
 * the input itself (bytes 16..47 and 8..11, the count capped), so that the
 * fuzzer gets past those checks to the table and the checksum. On success
 * every layer must lie inside the file, aligned, in order, without overlap. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/packcache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t key[32] = {0};
    uint32_t n = 0;
    if (size >= 48) {
        memcpy(key, data + 16, 32);
        n = (uint32_t)data[8] | (uint32_t)data[9] << 8;
    }
    if (n > 4096)
        n = 4096;
    me_pc_blob *b = malloc(sizeof *b * (n ? n : 1));
    char why[200];
    if (!b)
        return 0;
    if (me_pc_parse(data, size, key, n, b, why, sizeof why) == 0) {
        uint64_t end = 0;
        for (uint32_t i = 0; i < n; i++) {
            assert(b[i].offset % ME_PC_ALIGN == 0 && b[i].offset >= end);
            assert(b[i].bytes > 0 && b[i].bytes <= size - b[i].offset);
            end = b[i].offset + b[i].bytes;
        }
    } else {
        assert(why[0]);
    }
    free(b);
    return 0;
}
