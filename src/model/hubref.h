/*
 * hubref.h - the syntax of a Hugging Face hub model reference,
 * ORG/NAME[@REV]: which repo ids and revisions medembed accepts.
 *
 * One implementation for the library's name resolution (resolve.c) and for
 * the CLI's `medembed pull`, which compiles this same file into its own
 * binary (the Makefile's CLI_BORROWED, as curl's tool borrows curlx_ files);
 * the library builds it with hidden visibility, so the two copies never
 * meet. It therefore depends on nothing but libc. No I/O: every input may
 * come from the command line or the network (tests/fuzz/fuzz_hub.c).
 */
#ifndef ME_HUBREF_H
#define ME_HUBREF_H

#include <stddef.h>

/* Limits on what we accept. The hub itself caps repo and org names at 96
 * characters. */
#define ME_HUB_NAME_MAX 96
#define ME_HUB_REV_MAX 255
#define ME_HUB_DEFAULT_REVISION "main"
/* Buffer sizes for me_hub_ref_parse's outputs, NUL included. */
#define ME_HUB_REPO_BUF (2 * ME_HUB_NAME_MAX + 2)
#define ME_HUB_REV_BUF (ME_HUB_REV_MAX + 1)

/* 1 if s[0..len) is "org/name" with both parts 1..ME_HUB_NAME_MAX characters
 * of [A-Za-z0-9._-], neither starting nor ending with '.' or '-', and no "..". */
int me_hub_repo_id_valid(const char *s, size_t len);

/* 1 if a revision (branch, tag or commit) is acceptable: 1..ME_HUB_REV_MAX
 * bytes, no control characters, spaces or backslashes, no "..", not starting
 * with '/'. So a revision never leaves the folder it is joined to. */
int me_hub_revision_valid(const char *s, size_t len);

/* Splits "org/name" or "org/name@REV" into repo and rev (rev gets "" when
 * absent). Returns 0, or -1 with a one-line message in err (may be NULL). */
int me_hub_ref_parse(const char *arg, char *repo, size_t repo_len, char *rev, size_t rev_len,
                     char *err, size_t err_len);

#endif
