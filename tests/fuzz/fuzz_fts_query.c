/*
 * fuzz_fts_query.c - libFuzzer target for the keyword-search query builder
 * (me_fts_query, src/index/fts.c).
 *
 * The input is the user's query text. Whatever it holds (FTS5 operators,
 * quotes, parentheses, column filters, invalid UTF-8), the built query must
 * be accepted by SQLite's FTS5 MATCH on a table made as the index makes
 * it: a syntax error would mean user text reached FTS5's query language.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "index/index.h"

static sqlite3 *db;

static void setup(void)
{
    if (db)
        return;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        sqlite3_exec(db,
                     ME_FTS_SCHEMA
                     "INSERT INTO fts(rowid, text) VALUES (1, 'Coded E11.9; HbA1c 7%% and "
                     "5-FU'), (2, 'near AND or NOT text: caf\xc3\xa9 \"quoted\" (x) * ^y');",
                     NULL, NULL, NULL) != SQLITE_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0; /* the text ends at the first NUL, as a C string does */
    char *q = me_fts_query(text);
    if (!q)
        abort();
    if (q[0]) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT rowid, bm25(fts) FROM fts WHERE fts MATCH ?1 "
                                   "ORDER BY rank", -1, &st, NULL) != SQLITE_OK)
            abort();
        sqlite3_bind_text(st, 1, q, -1, SQLITE_STATIC);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        }
        if (rc != SQLITE_DONE) {
            fprintf(stderr, "FTS5 refused %s: %s\n", q, sqlite3_errmsg(db));
            abort();
        }
        sqlite3_finalize(st);
    }
    free(q);
    free(text);
    return 0;
}
