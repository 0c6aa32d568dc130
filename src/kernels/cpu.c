/* cpu.c - CPU feature detection. x86: cpuid for what the chip has, XGETBV
 * for what the OS saves on context switch (a chip with AVX-512 under an OS
 * that does not enable the ZMM state must not use it). ARM64 Linux: the
 * kernel's hardware capabilities (getauxval AT_HWCAP, AT_HWCAP2), which
 * list only what the kernel lets user space run. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Whether the comma-separated list names `name` exactly. */
static int list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ", ");
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len;
        p += strspn(p, ", ");
    }
    return 0;
}

/* MEDEMBED_CPU_DISABLE=avx512_bf16,avx512_vnni hides those features, so the
 * fallback kernels (bf16 in fp32 FMA, int8 in vpmaddwd) can be run and
 * tested on a CPU that has them; amx (or amx_tile, amx_bf16, amx_int8:
 * the level needs all three) hides the AMX level. On ARM64, i8mm hides
 * FEAT_I8MM (int8 then multiplies with sdot), dotprod FEAT_DotProd (int8
 * in smull/sadalp where i8mm is hidden too), bf16 FEAT_BF16 (bf16 in fp32
 * fmla; a whole name, not the tail of avx512_bf16), and neon the NEON
 * level. */
static void apply_disable(me_cpu *c)
{
    const char *env = getenv("MEDEMBED_CPU_DISABLE");
    if (!env)
        return;
    if (list_has(env, "bf16"))
        c->arm_bf16 = 0;
    if (list_has(env, "i8mm"))
        c->i8mm = 0;
    if (strstr(env, "avx512_bf16"))
        c->avx512_bf16 = 0;
    if (strstr(env, "avx512_vnni"))
        c->avx512_vnni = 0;
    if (strstr(env, "amx"))
        c->amx_tile = c->amx_bf16 = c->amx_int8 = c->os_amx = 0;
    if (strstr(env, "dotprod"))
        c->dotprod = 0;
    if (strstr(env, "neon"))
        c->neon = c->dotprod = c->arm_bf16 = c->i8mm = 0;
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <pthread.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>

/* Linux (5.16+) gives a process the AMX tile data state only on request
 * (arch/x86/include/uapi/asm/prctl.h; the kernel's
 * Documentation/arch/x86/xstate.rst). */
#define ME_ARCH_GET_XCOMP_PERM 0x1022
#define ME_ARCH_REQ_XCOMP_PERM 0x1023
#define ME_XFEATURE_XTILEDATA 18
#endif

static int g_amx_perm;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;

/* Once per process: asks for the tile data state, and checks that it was
 * granted. Any failure (an older kernel, a seccomp filter, another OS)
 * leaves the AMX level off: the AVX-512 one runs. */
static void request_amx(void)
{
#if defined(__linux__) && defined(SYS_arch_prctl)
    unsigned long bits = 0;
    if (syscall(SYS_arch_prctl, ME_ARCH_REQ_XCOMP_PERM, ME_XFEATURE_XTILEDATA) == 0 &&
        syscall(SYS_arch_prctl, ME_ARCH_GET_XCOMP_PERM, &bits) == 0)
        g_amx_perm = (bits >> ME_XFEATURE_XTILEDATA) & 1;
#endif
}

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
    int avx = (cx >> 28) & 1, os_tiles = 0;
    if (osxsave && avx) {
        uint64_t xcr0 = xgetbv0();
        c->os_avx = (xcr0 & 0x6) == 0x6;            /* XMM + YMM */
        c->os_avx512 = (xcr0 & 0xe6) == 0xe6;       /* + opmask, ZMM_Hi256, Hi16_ZMM */
        os_tiles = (xcr0 & 0x60000) == 0x60000;     /* XTILECFG (17) + XTILEDATA (18) */
    }
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, cx, d);
        c->avx2 = (b >> 5) & 1;
        c->avx512f = (b >> 16) & 1;
        c->avx512dq = (b >> 17) & 1;
        c->avx512bw = (b >> 30) & 1;
        c->avx512vl = (b >> 31) & 1;
        c->avx512_vnni = (cx >> 11) & 1;
        c->amx_bf16 = (d >> 22) & 1;
        c->amx_tile = (d >> 24) & 1;
        c->amx_int8 = (d >> 25) & 1;
        if (os_tiles && c->amx_tile) {
            pthread_once(&g_amx_once, request_amx);
            c->os_amx = g_amx_perm;
        }
        __cpuid_count(7, 1, a, b, cx, d);
        c->avx512_bf16 = (a >> 5) & 1;
    }
    apply_disable(c);
}
#elif defined(__aarch64__)
#if defined(__linux__)
#include <sys/auxv.h>
#endif
/* The bits of Linux's arch/arm64/include/uapi/asm/hwcap.h, defined here for
 * C libraries whose headers predate them. */
#define ME_HWCAP_ASIMD (1ul << 1)
#define ME_HWCAP_ASIMDDP (1ul << 20)
#define ME_HWCAP2_I8MM (1ul << 13)
#define ME_HWCAP2_BF16 (1ul << 14)

void me_cpu_detect(me_cpu *c)
{
    memset(c, 0, sizeof *c);
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    c->neon = (hw & ME_HWCAP_ASIMD) != 0;
    c->dotprod = c->neon && (hw & ME_HWCAP_ASIMDDP) != 0;
    c->arm_bf16 = c->neon && (hw2 & ME_HWCAP2_BF16) != 0;
    c->i8mm = c->neon && (hw2 & ME_HWCAP2_I8MM) != 0;
#else
    /* Advanced SIMD is part of every ARMv8-A core; the optional extensions
     * stay off where the OS gives no way to ask */
    c->neon = 1;
#endif
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
    case ME_ISA_AMX:
        return "amx";
    case ME_ISA_AMX_EMU:
        return "amx-emu";
    case ME_ISA_NEON:
        return "neon";
    default:
        return "scalar";
    }
}
