/*
 * RFC 9457 problem+json rendering. All text goes through problem_append_json_text(), which
 * escapes and repairs it, so an error body can never carry raw input or break JSON.
 */
#include <string.h>
#include "api/http/problem.h"
#include "api/codec/utf8.h"

const char *problem_title(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Error";
    }
}

void problem_append_json_text(strbuf_t *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;

    strbuf_reserve(out, len + 2);
    strbuf_append_char(out, '"');
    while (i < len) {
        uint32_t cp = 0;
        size_t n = utf8_decode(p + i, len - i, &cp);
        const char *esc = NULL;
        char u[7];

        if (n != 0 && cp >= 0x20 && cp != '"' && cp != '\\' && cp != '<' && cp != '>' &&
            cp != '&' && !(cp >= 0x7f && cp <= 0x9f) && cp != 0x2028 && cp != 0x2029) {
            i += n;
            continue;
        }
        strbuf_append(out, s + run, i - run);
        if (n == 0) {
            esc = "\\ufffd";
            n = 1;
        } else if (cp == '"') {
            esc = "\\\"";
        } else if (cp == '\\') {
            esc = "\\\\";
        } else if (cp == '\n') {
            esc = "\\n";
        } else if (cp == '\r') {
            esc = "\\r";
        } else if (cp == '\t') {
            esc = "\\t";
        } else {
            u[0] = '\\', u[1] = 'u';
            u[2] = hex[(cp >> 12) & 0xf], u[3] = hex[(cp >> 8) & 0xf];
            u[4] = hex[(cp >> 4) & 0xf], u[5] = hex[cp & 0xf];
            u[6] = '\0';
            esc = u;
        }
        strbuf_append_str(out, esc);
        i += n;
        run = i;
    }
    strbuf_append(out, s + run, len - run);
    strbuf_append_char(out, '"');
}

static void append_cstr(strbuf_t *out, const char *s)
{
    problem_append_json_text(out, s, s != NULL ? strlen(s) : 0);
}

void problem_render(strbuf_t *out, int status, const char *slug, const char *detail,
                    const field_error_t *errors, size_t nerrors)
{
    size_t i;

    strbuf_append_str(out, "{\"type\":");
    if (slug == NULL || slug[0] == '\0') {
        strbuf_append_str(out, "\"about:blank\"");
    } else {
        strbuf_t type;
        strbuf_init(&type);
        strbuf_append_str(&type, "/problems/");
        strbuf_append_str(&type, slug);
        problem_append_json_text(out, type.data, type.len);
        strbuf_dispose(&type);
    }
    strbuf_append_str(out, ",\"title\":");
    append_cstr(out, problem_title(status));
    strbuf_appendf(out, ",\"status\":%d", status);
    if (detail != NULL) {
        strbuf_append_str(out, ",\"detail\":");
        append_cstr(out, detail);
    }
    if (errors != NULL && nerrors > 0) {
        strbuf_append_str(out, ",\"errors\":[");
        for (i = 0; i < nerrors; ++i) {
            if (i > 0)
                strbuf_append_char(out, ',');
            strbuf_append_str(out, "{\"field\":");
            append_cstr(out, errors[i].field);
            strbuf_append_str(out, ",\"message\":");
            append_cstr(out, errors[i].message);
            strbuf_append_char(out, '}');
        }
        strbuf_append_char(out, ']');
    }
    strbuf_append_char(out, '}');
}
