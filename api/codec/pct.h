/*
 * Percent-encoding helpers shared by the path router (api/http/routes.c) and the query parser
 * (api/resources/validate.c).
 */
#ifndef PROFILE_API_CODEC_PCT_H
#define PROFILE_API_CODEC_PCT_H

/** The value of one hexadecimal digit of a %XX escape (either case), or -1. */
static inline int pct_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
