/*
 * hubref.c - repo ids and revisions (hubref.h). Compiled into the library
 * and, unchanged, into the CLI; keep it free of library internals.
 */
#include "model/hubref.h"

#include <stdio.h>
#include <string.h>

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

static int part_valid(const char *s, size_t n)
{
    if (n == 0 || n > ME_HUB_NAME_MAX)
        return 0;
    if (s[0] == '.' || s[0] == '-' || s[n - 1] == '.' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_name_char(s[i]))
            return 0;
        if (i && s[i] == '.' && s[i - 1] == '.')
            return 0;
    }
    return 1;
}

int me_hub_repo_id_valid(const char *s, size_t len)
{
    const char *slash = memchr(s, '/', len);
    if (!slash)
        return 0;
    size_t a = (size_t)(slash - s);
    return part_valid(s, a) && part_valid(slash + 1, len - a - 1);
}

int me_hub_revision_valid(const char *s, size_t len)
{
    if (len == 0 || len > ME_HUB_REV_MAX || s[0] == '/')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '\\')
            return 0;
        if (i && c == '.' && s[i - 1] == '.')
            return 0;
    }
    return 1;
}

int me_hub_ref_parse(const char *arg, char *repo, size_t repo_len, char *rev, size_t rev_len,
                     char *err, size_t err_len)
{
    size_t n = strlen(arg);
    const char *at = memchr(arg, '@', n);
    size_t rn = at ? (size_t)(at - arg) : n;
    if (!me_hub_repo_id_valid(arg, rn)) {
        if (err && err_len)
            snprintf(err, err_len,
                     "\"%.*s\" is not a hub repo id (expected ORG/NAME, e.g. "
                     "abhinand/MedEmbed-base-v0.1)",
                     (int)(rn > 200 ? 200 : rn), arg);
        return -1;
    }
    if (at && !me_hub_revision_valid(at + 1, n - rn - 1)) {
        if (err && err_len)
            snprintf(err, err_len, "\"%.200s\" is not a valid revision (a branch, tag or commit)",
                     at + 1);
        return -1;
    }
    if (rn >= repo_len || (at && n - rn - 1 >= rev_len) || (!at && rev_len == 0)) {
        if (err && err_len)
            snprintf(err, err_len, "repo id too long");
        return -1;
    }
    memcpy(repo, arg, rn);
    repo[rn] = 0;
    if (at)
        memcpy(rev, at + 1, n - rn);
    else
        rev[0] = 0;
    return 0;
}
