/*
 * base64url (no padding) encoder and strict decoder shared by JWT verification and cursors.
 */
#include "api/codec/b64url.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int value_of(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

bool b64url_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len; ++i)
        if (value_of((unsigned char)s[i]) < 0)
            return false;
    return true;
}

size_t b64url_encode(const unsigned char *src, size_t len, char *dst)
{
    size_t i = 0, o = 0;

    for (; i + 3 <= len; i += 3) {
        unsigned long v =
            ((unsigned long)src[i] << 16) | ((unsigned long)src[i + 1] << 8) | src[i + 2];
        dst[o++] = alphabet[(v >> 18) & 63];
        dst[o++] = alphabet[(v >> 12) & 63];
        dst[o++] = alphabet[(v >> 6) & 63];
        dst[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        unsigned long v = (unsigned long)src[i] << 16;
        dst[o++] = alphabet[(v >> 18) & 63];
        dst[o++] = alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        unsigned long v = ((unsigned long)src[i] << 16) | ((unsigned long)src[i + 1] << 8);
        dst[o++] = alphabet[(v >> 18) & 63];
        dst[o++] = alphabet[(v >> 12) & 63];
        dst[o++] = alphabet[(v >> 6) & 63];
    }
    dst[o] = '\0';
    return o;
}

long b64url_decode(const char *src, size_t len, unsigned char *dst, size_t dstcap)
{
    size_t i = 0, o = 0, rem = len % 4;
    size_t need = (len / 4) * 3 + (rem ? rem - 1 : 0);

    if (rem == 1 || need > dstcap || need > (size_t)0x7fffffff)
        return -1;
    for (; i + 4 <= len; i += 4) {
        int a = value_of((unsigned char)src[i]), b = value_of((unsigned char)src[i + 1]);
        int c = value_of((unsigned char)src[i + 2]), d = value_of((unsigned char)src[i + 3]);
        if ((a | b | c | d) < 0)
            return -1;
        unsigned long v = ((unsigned long)a << 18) | ((unsigned long)b << 12) |
                          ((unsigned long)c << 6) | (unsigned long)d;
        dst[o++] = (unsigned char)(v >> 16);
        dst[o++] = (unsigned char)(v >> 8);
        dst[o++] = (unsigned char)v;
    }
    if (rem == 2) {
        int a = value_of((unsigned char)src[i]), b = value_of((unsigned char)src[i + 1]);
        if ((a | b) < 0 || (b & 0x0f) != 0)
            return -1;
        dst[o++] = (unsigned char)((a << 2) | (b >> 4));
    } else if (rem == 3) {
        int a = value_of((unsigned char)src[i]), b = value_of((unsigned char)src[i + 1]);
        int c = value_of((unsigned char)src[i + 2]);
        if ((a | b | c) < 0 || (c & 0x03) != 0)
            return -1;
        dst[o++] = (unsigned char)((a << 2) | (b >> 4));
        dst[o++] = (unsigned char)(((b & 0x0f) << 4) | (c >> 2));
    }
    return (long)o;
}
