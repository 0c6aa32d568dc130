/*
 * progress.h - the progress line and the final summary of long commands
 * (embed, index build/add, eval, bench, pull). One owner for when a bar is
 * drawn (stderr a terminal, or --progress; never with --quiet), how often
 * (at most 4 redraws a second on a terminal, one line a second otherwise)
 * and what it shows (done/total, texts/s, tokens/s, ETA). Everything goes
 * to stderr, so it never mixes with the output stream.
 */
#ifndef MEDEMBED_CLI_PROGRESS_H
#define MEDEMBED_CLI_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

/* --progress / --quiet, as cli_common.progress holds them. */
enum { CLI_PROGRESS_AUTO = 0, CLI_PROGRESS_FORCE = 1, CLI_PROGRESS_QUIET = -1 };

/* What the total counts: bytes of the input file, or items (texts, runs). */
enum { CLI_TOTAL_NONE = 0, CLI_TOTAL_BYTES, CLI_TOTAL_ITEMS };

typedef struct cli_progress {
    int on;       /* draw the line and the summary */
    int tty;      /* stderr is a terminal: redraw in place */
    const char *label;
    int total_kind;
    int64_t total;                 /* bytes or items; 0 = unknown */
    int64_t pos;                   /* bytes read (or items done) so far */
    int64_t base;                  /* pos when this run started (resume) */
    int64_t texts, tokens, truncated, invalid;
    double t0, last;
    int drew;
    int no_tokens; /* the command cannot count tokens (index: chunks) */
} cli_progress;

/* 1 when a command with this mode shows progress on stderr now. */
int cli_progress_wanted(int mode);
/* Starts the clock. total_kind/total: what "done of total" means (the size
 * of a regular file is found with cli_progress_file_size). */
void cli_progress_begin(cli_progress *p, int mode, const char *label, int total_kind,
                        int64_t total);
/* A resumed run starts at pos: the rate and the ETA count from there. */
void cli_progress_skip(cli_progress *p, int64_t pos);
/* Size of the regular file behind f (0 for a pipe or a terminal). */
int64_t cli_progress_file_size(FILE *f);
/* Counts a finished batch; pos is the input position in bytes (or -1 to
 * count pos in items: pos += texts). Redraws when due. */
void cli_progress_add(cli_progress *p, int64_t texts, int64_t tokens, int64_t truncated,
                      int64_t pos);
/* Erases the line; NULL: the one on the terminal now, if any (cli_error and
 * cli_warn do this, so a message starts on a clean line). */
void cli_progress_clear(cli_progress *p);
/* Erases the line and prints the one-line summary: texts, tokens,
 * truncated, invalid UTF-8 (the count of lines with it), seconds. */
void cli_progress_end(cli_progress *p, int64_t invalid);

/* Shared by the pull bar: monotonic seconds, and a byte count as "1.2 MB". */
double cli_now_s(void);
void cli_human_bytes(char *out, size_t n, int64_t bytes);

#endif
