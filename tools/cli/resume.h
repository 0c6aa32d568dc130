/*
 * resume.h - what `embed --resume` trusts in the last complete line of a
 * JSONL output (no I/O, so tests/fuzz/fuzz_resume.c can drive it).
 */
#ifndef MEDEMBED_CLI_RESUME_H
#define MEDEMBED_CLI_RESUME_H

#include <stddef.h>

/* line[0..len) is one line of an earlier `medembed embed` JSONL output,
 * without its '\n': a JSON object written as {"id": ID, "embedding": [...],
 * ...}. Returns 0 and the raw text of ID in *id (malloc'd), or 1 with a
 * reason in why. */
int cli_resume_record(const char *line, size_t len, char **id, char *why, size_t why_len);

#endif
