/*
 * assets.c - tools/server/openapi.json and tools/server/docs.html, embedded
 * in the binary with the assembler's .incbin (paths are relative to the
 * repository root, where make runs; the Makefile lists both files as
 * prerequisites of this object). Each is followed by a NUL byte.
 */
#include "routes.h"

#define SRV_EMBED_FILE(sym, file)                                                     \
    __asm__(".section .rodata\n"                                                     \
            ".global " #sym "\n"                                                     \
            ".type " #sym ", @object\n"                                              \
            ".balign 16\n" #sym ":\n"                                                \
            ".incbin \"" file "\"\n" #sym "_end:\n"                                  \
            ".byte 0\n"                                                              \
            ".global " #sym "_size\n"                                                \
            ".type " #sym "_size, @object\n"                                         \
            ".balign 8\n" #sym "_size:\n"                                            \
            ".quad " #sym "_end - " #sym "\n"                                        \
            ".previous\n")

SRV_EMBED_FILE(srv_openapi_json, "tools/server/openapi.json");
SRV_EMBED_FILE(srv_docs_html, "tools/server/docs.html");
