/*
 * unicode.h - UTF-8 decoding and the character classes of Hugging Face's
 * BERT pipeline, built on utf8proc.
 *
 * HF `tokenizers` mixes two Unicode versions: general categories (control,
 * punctuation, nonspacing mark) come from the `unicode_categories` 0.1.1
 * crate, frozen at Unicode 8.0, while whitespace and lowercase come from
 * Rust's std (current Unicode). utf8proc gives current categories, so
 * unicode.c masks the code points assigned after Unicode 8.0 that would
 * otherwise change a BERT decision (see me_uc_hf_category).
 */
#ifndef ME_TOK_UNICODE_H
#define ME_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define ME_UC_REPLACEMENT 0xFFFDu

/* Decodes n bytes of UTF-8 into out (room for n code points), replacing each
 * maximal invalid subpart with U+FFFD exactly like Rust's
 * String::from_utf8_lossy. Returns the number of code points written.
 * *n_invalid (may be NULL) gets the number of replacements and *first_bad
 * (may be NULL) the byte offset of the first invalid byte (n if none). */
size_t me_utf8_decode_lossy(const uint8_t *s, size_t n, uint32_t *out, size_t *n_invalid,
                            size_t *first_bad);

/* Offset of the first byte that is not part of valid UTF-8, or n. */
size_t me_utf8_first_invalid(const uint8_t *s, size_t n);

/* Writes the UTF-8 form of c (a valid scalar value) to out; returns 1..4. */
size_t me_utf8_encode(uint32_t c, uint8_t *out);

/* Rust char::is_whitespace: the White_Space property. */
int me_uc_is_whitespace(uint32_t c);

/* HF BertNormalizer is_control: Cc/Cf/Co/Cs (Unicode 8.0) except \t \n \r. */
int me_uc_is_control(uint32_t c);

/* HF BertPreTokenizer is_bert_punc: ASCII punctuation or P* (Unicode 8.0). */
int me_uc_is_punct(uint32_t c);

/* HF BertNormalizer is_chinese_char (the CJK ideograph blocks of BERT). */
int me_uc_is_cjk(uint32_t c);

/* Nonspacing mark (Mn, Unicode 8.0), what strip_accents drops after NFD. */
int me_uc_is_mn(uint32_t c);

/* Canonical combining class as HF's NFD sees it. */
int me_uc_ccc(uint32_t c);

/* Canonical (NFD) decomposition of one code point into out (room for
 * ME_UC_DECOMP_MAX); returns the count (1 if c does not decompose). The
 * caller applies canonical reordering (me_uc_canonical_order). */
#define ME_UC_DECOMP_MAX 8
int me_uc_decompose(uint32_t c, uint32_t *out);

/* Stable-sorts each run of non-starters by combining class (the canonical
 * ordering step of NFD), in place. */
void me_uc_canonical_order(uint32_t *s, size_t n);

/* Rust char::to_lowercase (full mapping: U+0130 -> "i\u0307"). Writes 1 or
 * 2 code points; returns the count. */
int me_uc_lower_full(uint32_t c, uint32_t out[2]);

/* Python str.lower() of s[0..n) into out (room for 2n): full lowercase plus
 * the Final_Sigma rule. Returns the number written. */
size_t me_uc_py_lower(const uint32_t *s, size_t n, uint32_t *out);

/* Regex \w (Unicode): used by single_word added tokens. */
int me_uc_is_word(uint32_t c);

/* The general category HF's unicode_categories tables give c: utf8proc's,
 * with code points assigned after Unicode 8.0 reported as Cn (0) and the
 * three characters whose category changed since then reported as in 8.0. */
int me_uc_hf_category(uint32_t c);

#endif
