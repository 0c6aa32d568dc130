/* cpu.c - CPU feature detection: cpuid for what the chip has, XGETBV for
 * what the OS saves on context switch (a chip with AVX-512 under an OS that
 * does not enable the ZMM state must not use it). */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* MEDEMBED_CPU_DISABLE=avx512_bf16,avx512_vnni hides those features, so the
 * fallback kernels (bf16 in fp32 FMA, int8 in vpmaddwd) can be run and
 * tested on a CPU that has them. */
static void apply_disable(me_cpu *c)
{
    const char *env = getenv("MEDEMBED_CPU_DISABLE");
    if (!env)
        return;
    if (strstr(env, "avx512_bf16"))
        c->avx512_bf16 = 0;
    if (strstr(env, "avx512_vnni"))
        c->avx512_vnni = 0;
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void)
{
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (uint64_t)edx << 32 | eax;
}

void me_cpu_detect(me_cpu *c)
{
    memset(c, 0, sizeof *c);
    unsigned a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d))
        return;
    int osxsave = (cx >> 27) & 1;
    c->fma = (cx >> 12) & 1;
    c->f16c = (cx >> 29) & 1;
    int avx = (cx >> 28) & 1;
    if (osxsave && avx) {
        uint64_t xcr0 = xgetbv0();
        c->os_avx = (xcr0 & 0x6) == 0x6;            /* XMM + YMM */
        c->os_avx512 = (xcr0 & 0xe6) == 0xe6;       /* + opmask, ZMM_Hi256, Hi16_ZMM */
    }
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, cx, d);
        c->avx2 = (b >> 5) & 1;
        c->avx512f = (b >> 16) & 1;
        c->avx512dq = (b >> 17) & 1;
        c->avx512bw = (b >> 30) & 1;
        c->avx512vl = (b >> 31) & 1;
        c->avx512_vnni = (cx >> 11) & 1;
        __cpuid_count(7, 1, a, b, cx, d);
        c->avx512_bf16 = (a >> 5) & 1;
    }
    apply_disable(c);
}
#else
void me_cpu_detect(me_cpu *c)
{
    memset(c, 0, sizeof *c);
}
#endif

const char *me_isa_name(me_isa isa)
{
    switch (isa) {
    case ME_ISA_AVX2:
        return "avx2";
    case ME_ISA_AVX512:
        return "avx512";
    default:
        return "scalar";
    }
}
