/* dispatch.c - chooses the kernel table once per process from the CPU's
 * features, or from MEDEMBED_ISA=scalar|avx2|avx512|amx|neon (a forced level the
 * CPU cannot run falls back to the best it can, so tests can request every
 * level everywhere); MEDEMBED_ISA=amx-emu runs the AMX kernels on emulated
 * tiles (kernels.h, ME_ISA_AMX_EMU), for tests. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "medembed.h"

static const me_kern KERN_SCALAR = {
    .isa = ME_ISA_SCALAR,
    .linear = me_linear_scalar,
    .pack = me_pack_scalar,
    .in_place_dtypes = 1u << MEDEMBED_DTYPE_F32,
    .unpack = me_unpack_generic,
    .attention = me_attention_scalar,
    .layernorm = me_layernorm_scalar,
    .gelu = me_gelu_scalar,
    .peak = me_peak_scalar,
    .dot_f32 = me_dot_f32_scalar,
    .dot_i8 = me_dot_i8_scalar,
};

/* The ISA tables (gemm_avx2.c, gemm_avx512.c, gemm_amx.c), which reference every
 * kernel of their level (the search dot products too). They are strong
 * references on x86: a weak undefined symbol does not pull an object out
 * of libmedembed.a, so programs linked statically would silently lose the
 * SIMD kernels. Other architectures build without them. */
#if defined(__x86_64__) || defined(__i386__)
#define ME_X86 1
extern const me_kern me_kern_avx2;
extern const me_kern me_kern_avx512;
extern const me_kern me_kern_amx;
extern const me_kern me_kern_amx_emu;
#endif
#if defined(__aarch64__)
#define ME_ARM64 1
extern const me_kern me_kern_neon;
#endif

static const me_kern *g_kern;
static const me_kern *g_forced;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

const me_kern *me_kern_for(me_isa isa)
{
    me_cpu c;
    me_cpu_detect(&c);
#ifdef ME_X86
    /* AVX2 too: the level's fp32 search dot product is the AVX2 one */
    int avx512 = c.os_avx512 && c.avx512f && c.avx512bw && c.avx512vl && c.avx512dq && c.avx2 &&
                 c.fma && c.f16c;
#endif
    switch (isa) {
#ifdef ME_X86
#ifdef __x86_64__
    case ME_ISA_AMX: /* the AVX-512 level plus the tiles */
        if (avx512 && c.amx_tile && c.amx_bf16 && c.amx_int8 && c.os_amx)
            return &me_kern_amx;
        return NULL;
    case ME_ISA_AMX_EMU:
        return avx512 ? &me_kern_amx_emu : NULL;
#endif
    case ME_ISA_AVX512:
        return avx512 ? &me_kern_avx512 : NULL;
    case ME_ISA_AVX2:
        if (c.os_avx && c.avx2 && c.fma && c.f16c)
            return &me_kern_avx2;
        return NULL;
#endif
#ifdef ME_ARM64
    case ME_ISA_NEON:
        return c.neon ? &me_kern_neon : NULL;
#endif
    default:
        return isa == ME_ISA_SCALAR ? &KERN_SCALAR : NULL;
    }
}

static void choose(void)
{
    const char *env = getenv("MEDEMBED_ISA");
#ifdef ME_ARM64
    if (!(env && strcmp(env, "scalar") == 0) && me_kern_for(ME_ISA_NEON)) {
        g_kern = me_kern_for(ME_ISA_NEON);
        return;
    }
#endif
    me_isa want = ME_ISA_AMX;
    if (env && *env) {
        if (strcmp(env, "scalar") == 0)
            want = ME_ISA_SCALAR;
        else if (strcmp(env, "avx2") == 0)
            want = ME_ISA_AVX2;
        else if (strcmp(env, "avx512") == 0)
            want = ME_ISA_AVX512;
        else if (strcmp(env, "amx-emu") == 0)
            want = ME_ISA_AMX_EMU; /* then, without AVX-512, the best level below */
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
    return g_forced ? g_forced : g_kern;
}

void me_kern_force(const me_kern *k)
{
    g_forced = k;
}

const char *medembed_isa(void)
{
    return me_isa_name(me_kern_get()->isa);
}
