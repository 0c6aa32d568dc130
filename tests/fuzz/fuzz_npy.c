/*
 * fuzz_npy.c - libFuzzer target for the .npy header parser behind
 * `--vectors` and `--query-vectors` (tools/cli/npy.c, included whole: it
 * lives with the CLI, not in the library).
 *
 * The input is a whole .npy file. Beyond "no crash", an accepted file must
 * be what the reader then trusts: a 2-D float32 array whose data fills the
 * rest of the file exactly, with sane dimensions.
 */
#include <stdint.h>
#include <stdlib.h>

#include "../../tools/cli/npy.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npy_info in;
    char why[300];
    if (npy_parse(data, size, size, &in, why, sizeof why) == 0) {
        if (in.rows < 0 || in.rows > NPY_MAX_ROWS || in.cols < 1 || in.cols > NPY_MAX_COLS)
            abort();
        if (in.data_offset > size ||
            (uint64_t)(size - in.data_offset) != (uint64_t)in.rows * (uint64_t)in.cols * 4)
            abort();
    } else if (!why[0]) {
        abort(); /* every refusal says why */
    }
    return 0;
}
