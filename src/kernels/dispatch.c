/* dispatch.c - chooses the kernel table once per process from the CPU's
 * features, or from MEDEMBED_ISA=scalar|avx2|avx512 (a forced level the CPU
 * cannot run falls back to the best it can, so tests can request every
 * level everywhere). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "medembed.h"

static const me_kern KERN_SCALAR = {ME_ISA_SCALAR, me_linear_scalar, NULL, NULL};

/* Filled by the ISA files when they are linked in (weak, so a build without
 * them still links). */
extern const me_kern me_kern_avx2 __attribute__((weak));
extern const me_kern me_kern_avx512 __attribute__((weak));

static const me_kern *g_kern;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

const me_kern *me_kern_for(me_isa isa)
{
    me_cpu c;
    me_cpu_detect(&c);
    switch (isa) {
    case ME_ISA_AVX512:
        if (&me_kern_avx512 && c.os_avx512 && c.avx512f && c.avx512bw && c.avx512vl &&
            c.avx512dq && c.fma && c.f16c)
            return &me_kern_avx512;
        return NULL;
    case ME_ISA_AVX2:
        if (&me_kern_avx2 && c.os_avx && c.avx2 && c.fma && c.f16c)
            return &me_kern_avx2;
        return NULL;
    default:
        return &KERN_SCALAR;
    }
}

static void choose(void)
{
    const char *env = getenv("MEDEMBED_ISA");
    me_isa want = ME_ISA_AVX512;
    if (env && *env) {
        if (strcmp(env, "scalar") == 0)
            want = ME_ISA_SCALAR;
        else if (strcmp(env, "avx2") == 0)
            want = ME_ISA_AVX2;
    }
    for (int i = (int)want; i >= 0; i--) {
        const me_kern *k = me_kern_for((me_isa)i);
        if (k) {
            g_kern = k;
            return;
        }
    }
    g_kern = &KERN_SCALAR;
}

const me_kern *me_kern_get(void)
{
    pthread_once(&g_once, choose);
    return g_kern;
}

const char *medembed_isa(void)
{
    return me_isa_name(me_kern_get()->isa);
}
