/*
 * unicode.c - UTF-8 decoding and the character classes of Hugging Face's
 * BERT pipeline (BertNormalizer, BertPreTokenizer), on top of utf8proc.
 *
 * Every class here was checked against HF `tokenizers` 0.22 for all 1.1M
 * code points (bertNormalizer().normalizeString / bertPreTokenizer() run on
 * each one). Two sources of difference had to be handled:
 *
 *  1. HF takes Cc/Cf/Co, P* and Mn from the `unicode_categories` crate,
 *     whose tables are Unicode 8.0. Characters assigned later are Cn there:
 *     kept by clean_text, not punctuation, not stripped as accents, not
 *     decomposed. k_after_u8 lists those of them that utf8proc (Unicode 15)
 *     puts in a category that matters; three characters changed category.
 *  2. HF's CJK test covers 0x2B920..0x2CEAF, not 0x2B820..: the gap is
 *     inherited from Google's BERT and kept for compatibility.
 *
 * Whitespace (Rust char::is_whitespace) and lowercase (Rust
 * char::to_lowercase) follow current Unicode in HF; they come from utf8proc
 * and a fixed White_Space list, plus the lowercase pairs new in Unicode
 * 16 (lower_u16). With that, all 1,112,064 scalar values normalize and
 * pre-tokenize exactly as HF tokenizers 0.22 does (utf8proc 2.8).
 */
#include "tokenizer/unicode.h"

#include <utf8proc.h>

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                     */
/* ------------------------------------------------------------------------ */

/* Length of the maximal subpart of an ill-formed or valid sequence starting
 * at s[0] (a lead byte >= 0x80): returns the sequence length if s[0..len)
 * is a complete valid sequence and sets *cp, otherwise returns the number of
 * bytes forming the maximal invalid subpart (>= 1) and leaves *cp alone.
 * Bounds follow the Unicode Standard table 3-7 (well-formed byte sequences). */
static size_t utf8_seq(const uint8_t *s, size_t avail, uint32_t *cp, int *valid)
{
    uint8_t b0 = s[0];
    size_t need;
    uint8_t lo = 0x80;
    uint8_t hi = 0xBF;
    uint32_t c;

    *valid = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
        c = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        c = b0 & 0x0Fu;
        if (b0 == 0xE0)
            lo = 0xA0;
        else if (b0 == 0xED)
            hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        c = b0 & 0x07u;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F;
    } else {
        return 1; /* 0x80..0xC1, 0xF5..0xFF: never valid */
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= avail)
            return i;
        uint8_t b = s[i];
        if (b < lo || b > hi)
            return i;
        lo = 0x80;
        hi = 0xBF;
        c = (c << 6) | (b & 0x3Fu);
    }
    *cp = c;
    *valid = 1;
    return need;
}

size_t me_utf8_decode_lossy(const uint8_t *s, size_t n, uint32_t *out, size_t *n_invalid,
                            size_t *first_bad)
{
    size_t i = 0;
    size_t o = 0;
    size_t bad = 0;
    size_t first = n;

    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            out[o++] = b;
            i++;
            continue;
        }
        uint32_t c = 0;
        int valid;
        size_t len = utf8_seq(s + i, n - i, &c, &valid);
        if (valid) {
            out[o++] = c;
        } else {
            out[o++] = ME_UC_REPLACEMENT;
            if (bad == 0)
                first = i;
            bad++;
        }
        i += len;
    }
    if (n_invalid)
        *n_invalid = bad;
    if (first_bad)
        *first_bad = first;
    return o;
}

size_t me_utf8_first_invalid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t c = 0;
        int valid;
        size_t len = utf8_seq(s + i, n - i, &c, &valid);
        if (!valid)
            return i;
        i += len;
    }
    return n;
}

size_t me_utf8_encode(uint32_t c, uint8_t *out)
{
    if (c < 0x80) {
        out[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (uint8_t)(0xC0 | (c >> 6));
        out[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (c >> 12));
        out[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (c >> 18));
    out[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------------ */
/* Categories as HF sees them                                                */
/* ------------------------------------------------------------------------ */

typedef struct uc_range {
    uint32_t lo, hi;
} uc_range;

/* Code points unknown to Unicode 8.0 that utf8proc classes as Cf, P* or Mn
 * (or, for U+11938, decomposes). Generated by diffing HF tokenizers 0.22
 * against utf8proc 2.8 (Unicode 15.0) over all code points. Sorted. */
static const uc_range k_after_u8[] = {
    {0x61D, 0x61D}, {0x7FD, 0x7FD}, {0x890, 0x891}, {0x898, 0x89F}, {0x8CA, 0x8E2}, {0x9FD, 0x9FE},
    {0xA76, 0xA76}, {0xAFA, 0xAFF}, {0xB55, 0xB55}, {0xC04, 0xC04}, {0xC3C, 0xC3C}, {0xC77, 0xC77},
    {0xC84, 0xC84}, {0xD00, 0xD00}, {0xD3B, 0xD3C}, {0xD81, 0xD81}, {0xEBA, 0xEBA}, {0xECE, 0xECE},
    {0x180F, 0x180F}, {0x1885, 0x1886}, {0x1ABF, 0x1ACE}, {0x1B7D, 0x1B7E}, {0x1DF6, 0x1DFB},
    {0x2E43, 0x2E4F}, {0x2E52, 0x2E5D}, {0xA82C, 0xA82C}, {0xA8C5, 0xA8C5}, {0xA8FF, 0xA8FF},
    {0xA9BD, 0xA9BD}, {0x10D24, 0x10D27}, {0x10EAB, 0x10EAD}, {0x10EFD, 0x10EFF},
    {0x10F46, 0x10F50}, {0x10F55, 0x10F59}, {0x10F82, 0x10F89}, {0x11070, 0x11070},
    {0x11073, 0x11074}, {0x110C2, 0x110C2}, {0x110CD, 0x110CD}, {0x111CF, 0x111CF},
    {0x1123E, 0x1123E}, {0x11241, 0x11241}, {0x1133B, 0x1133B}, {0x11438, 0x1143F},
    {0x11442, 0x11444}, {0x11446, 0x11446}, {0x1144B, 0x1144F}, {0x1145A, 0x1145B},
    {0x1145D, 0x1145E}, {0x11660, 0x1166C}, {0x116B9, 0x116B9}, {0x1182F, 0x11837},
    {0x11839, 0x1183B}, {0x11938, 0x11938}, {0x1193B, 0x1193C}, {0x1193E, 0x1193E},
    {0x11943, 0x11946}, {0x119D4, 0x119D7}, {0x119DA, 0x119DB}, {0x119E0, 0x119E0},
    {0x119E2, 0x119E2}, {0x11A01, 0x11A0A}, {0x11A33, 0x11A38}, {0x11A3B, 0x11A47},
    {0x11A51, 0x11A56}, {0x11A59, 0x11A5B}, {0x11A8A, 0x11A96}, {0x11A98, 0x11A9C},
    {0x11A9E, 0x11AA2}, {0x11B00, 0x11B09}, {0x11C30, 0x11C36}, {0x11C38, 0x11C3D},
    {0x11C3F, 0x11C3F}, {0x11C41, 0x11C45}, {0x11C70, 0x11C71}, {0x11C92, 0x11CA7},
    {0x11CAA, 0x11CB0}, {0x11CB2, 0x11CB3}, {0x11CB5, 0x11CB6}, {0x11D31, 0x11D36},
    {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D}, {0x11D3F, 0x11D45}, {0x11D47, 0x11D47},
    {0x11D90, 0x11D91}, {0x11D95, 0x11D95}, {0x11D97, 0x11D97}, {0x11EF3, 0x11EF4},
    {0x11EF7, 0x11EF8}, {0x11F00, 0x11F01}, {0x11F36, 0x11F3A}, {0x11F40, 0x11F40},
    {0x11F42, 0x11F4F}, {0x11FFF, 0x11FFF}, {0x12FF1, 0x12FF2}, {0x13430, 0x13440},
    {0x13447, 0x13455}, {0x16E97, 0x16E9A}, {0x16F4F, 0x16F4F}, {0x16FE2, 0x16FE2},
    {0x16FE4, 0x16FE4}, {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46}, {0x1E000, 0x1E006},
    {0x1E008, 0x1E018}, {0x1E01B, 0x1E021}, {0x1E023, 0x1E024}, {0x1E026, 0x1E02A},
    {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF},
    {0x1E4EC, 0x1E4EF}, {0x1E944, 0x1E94A}, {0x1E95E, 0x1E95F},
};

static int in_ranges(const uc_range *r, size_t n, uint32_t c)
{
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid].lo)
            hi = mid;
        else if (c > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static int after_u8(uint32_t c)
{
    if (c < k_after_u8[0].lo)
        return 0;
    return in_ranges(k_after_u8, sizeof k_after_u8 / sizeof k_after_u8[0], c);
}

int me_uc_hf_category(uint32_t c)
{
    if (c > 0x10FFFF)
        return UTF8PROC_CATEGORY_CN;
    /* Recategorised after Unicode 8.0: Canadian syllabics chi sign (Po ->
     * So), Sharada sandhi mark (Po -> Mn), Buhid vowel sign U (Mn -> Mc). */
    if (c == 0x166D || c == 0x111C9)
        return UTF8PROC_CATEGORY_PO;
    if (c == 0x1734)
        return UTF8PROC_CATEGORY_MN;
    if (after_u8(c))
        return UTF8PROC_CATEGORY_CN;
    return (int)utf8proc_category((utf8proc_int32_t)c);
}

int me_uc_is_whitespace(uint32_t c)
{
    /* The White_Space property; utf8proc has no accessor for it. It has
     * been stable since Unicode 6.3 (U+180E left it then). */
    if (c <= 0x20)
        return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85)
        return 0;
    switch (c) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return 1;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

int me_uc_is_control(uint32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r')
        return 0;
    if (c < 0x80)
        return c < 0x20 || c == 0x7F;
    int cat = me_uc_hf_category(c);
    return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
           cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS;
}

int me_uc_is_punct(uint32_t c)
{
    if (c < 0x80)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    int cat = me_uc_hf_category(c);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

int me_uc_is_cjk(uint32_t c)
{
    /* HF bert.rs is_chinese_char. 0x2B920 (not 0x2B820) is deliberate: HF
     * copied Google BERT's table, which skips the Extension E start. */
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

int me_uc_is_mn(uint32_t c)
{
    if (c < 0x300)
        return 0;
    return me_uc_hf_category(c) == UTF8PROC_CATEGORY_MN;
}

int me_uc_ccc(uint32_t c)
{
    if (c < 0x300 || c > 0x10FFFF || after_u8(c))
        return 0;
    return utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
}

int me_uc_decompose(uint32_t c, uint32_t *out)
{
    /* Nothing below U+00C0 has a canonical decomposition. */
    if (c < 0xC0 || c > 0x10FFFF || after_u8(c)) {
        out[0] = c;
        return 1;
    }
    utf8proc_int32_t buf[ME_UC_DECOMP_MAX];
    int last = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)c, buf, ME_UC_DECOMP_MAX,
                                                 UTF8PROC_DECOMPOSE, &last);
    if (n <= 0 || n > ME_UC_DECOMP_MAX) {
        out[0] = c;
        return 1;
    }
    for (utf8proc_ssize_t i = 0; i < n; i++)
        out[i] = (uint32_t)buf[i];
    return (int)n;
}

void me_uc_canonical_order(uint32_t *s, size_t n)
{
    /* Insertion sort per run of non-starters: runs are short (a handful of
     * marks), and the sort must be stable. */
    size_t i = 0;
    while (i < n) {
        if (me_uc_ccc(s[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && me_uc_ccc(s[j]) != 0)
            j++;
        for (size_t k = i + 1; k < j; k++) {
            uint32_t v = s[k];
            int cv = me_uc_ccc(v);
            size_t m = k;
            while (m > i && me_uc_ccc(s[m - 1]) > cv) {
                s[m] = s[m - 1];
                m--;
            }
            s[m] = v;
        }
        i = j;
    }
}

/* Lowercase mappings new in Unicode 16.0, which Rust's std (and so HF)
 * has and utf8proc 2.8 (Unicode 15.0) lacks; harmless with a newer
 * utf8proc, which gives the same. */
static uint32_t lower_u16(uint32_t c)
{
    if (c >= 0x10D50 && c <= 0x10D65)
        return c + 0x20; /* Garay */
    if (c >= 0x16EA0 && c <= 0x16EB8)
        return c + 0x1B; /* Kirat Rai */
    switch (c) {
    case 0x1C89:
        return 0x1C8A;
    case 0xA7CB:
        return 0x264;
    case 0xA7CC:
    case 0xA7CE:
    case 0xA7D2:
    case 0xA7D4:
    case 0xA7DA:
        return c + 1;
    case 0xA7DC:
        return 0x19B;
    default:
        return c;
    }
}

int me_uc_lower_full(uint32_t c, uint32_t out[2])
{
    if (c < 0x80) {
        out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        return 1;
    }
    /* The only unconditional multi-character lowercase in SpecialCasing. */
    if (c == 0x130) {
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    if (c > 0x10FFFF) {
        out[0] = c;
        return 1;
    }
    uint32_t l = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    out[0] = l == c ? lower_u16(c) : l;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Python str.lower()                                                        */
/* ------------------------------------------------------------------------ */

/* Derived property Cased: Lu, Ll, Lt, Other_Lowercase, Other_Uppercase.
 * utf8proc lacks the Other_* lists. A character with a case mapping (Ⓐ,
 * Ⅻ) counts as cased; the Other_* characters that are Lm/Mn (ʰ, ͅ) are
 * case-ignorable, which wins in the Final_Sigma scan. That leaves the ones
 * below, found by comparing with CPython 3.11 over all code points. */
static int uc_is_cased(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (c > 0x10FFFF)
        return 0;
    if (c == 0xAA || c == 0xBA || (c >= 0x1F130 && c <= 0x1F149) ||
        (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189))
        return 1; /* ª º and the squared / circled Latin capitals */
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL ||
        cat == UTF8PROC_CATEGORY_LT)
        return 1;
    utf8proc_int32_t ci = (utf8proc_int32_t)c;
    return utf8proc_tolower(ci) != ci || utf8proc_toupper(ci) != ci;
}

/* Derived property Case_Ignorable: Mn, Me, Cf, Lm, Sk, or Word_Break
 * MidLetter / MidNumLet / Single_Quote (listed below, from
 * WordBreakProperty.txt). */
static int uc_is_case_ignorable(uint32_t c)
{
    switch (c) {
    case 0x27:
    case 0x2E:
    case 0x3A:
    case 0xB7:
    case 0x387:
    case 0x55F:
    case 0x5F4:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0x2027:
    case 0xFE13:
    case 0xFE52:
    case 0xFE55:
    case 0xFF07:
    case 0xFF0E:
    case 0xFF1A:
        return 1;
    default:
        break;
    }
    if (c < 0x80)
        return c == '^' || c == '`'; /* Sk */
    if (c > 0x10FFFF)
        return 0;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME ||
           cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_LM ||
           cat == UTF8PROC_CATEGORY_SK;
}

/* CPython unicodeobject.c handle_capital_sigma: final form when preceded by
 * a cased letter (skipping case-ignorables) and not followed by one. */
static int is_final_sigma(const uint32_t *s, size_t n, size_t i)
{
    size_t j = i;
    uint32_t c = 0;
    int found = 0;
    while (j > 0) {
        j--;
        c = s[j];
        if (!uc_is_case_ignorable(c)) {
            found = 1;
            break;
        }
    }
    if (!found || !uc_is_cased(c))
        return 0;
    for (j = i + 1; j < n; j++) {
        if (!uc_is_case_ignorable(s[j]))
            return !uc_is_cased(s[j]);
    }
    return 1;
}

size_t me_uc_py_lower(const uint32_t *s, size_t n, uint32_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c < 0x80) {
            out[o++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x3A3) {
            out[o++] = is_final_sigma(s, n, i) ? 0x3C2 : 0x3C3;
        } else if (c == 0x130) {
            out[o++] = 'i';
            out[o++] = 0x307;
        } else {
            /* Without lower_u16: CPython 3.12/3.13 know Unicode 15.x. */
            out[o++] = c > 0x10FFFF ? c : (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
    }
    return o;
}

int me_uc_is_word(uint32_t c)
{
    /* Rust regex \w: Alphabetic, M*, Nd, Pc, Join_Control. Alphabetic is
     * approximated by L* and Nl (Other_Alphabetic is mostly marks). */
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               c == '_';
    if (c == 0x200C || c == 0x200D)
        return 1;
    if (c > 0x10FFFF)
        return 0;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_ND) ||
           cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_PC;
}
