/* json.c: a small strict JSON reader, for the files upecho-bench --json writes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

struct json_parser {
    const char *jp_start;
    const char *jp_p;
    const char *jp_end;
    const char *jp_why; /* set at the first error */
    unsigned jp_depth;
};

static struct json *json_parse_value(struct json_parser *jp);

/* Record the first error at the current position; returns NULL for the caller to pass on. */
static struct json *
json_fail(struct json_parser *jp, const char *why)
{
    if (jp->jp_why == NULL)
        jp->jp_why = why;
    return NULL;
}

static void
json_skip_ws(struct json_parser *jp)
{
    while (jp->jp_p < jp->jp_end &&
           (*jp->jp_p == ' ' || *jp->jp_p == '\t' || *jp->jp_p == '\n' || *jp->jp_p == '\r'))
        jp->jp_p++;
}

static struct json *
json_node(struct json_parser *jp, enum json_type type)
{
    struct json *j = calloc(1, sizeof(*j));

    if (j == NULL)
        return json_fail(jp, "out of memory");
    j->j_type = type;
    return j;
}

static int
json_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];

        if (c >= '0' && c <= '9')
            v = v << 4 | (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v = v << 4 | (unsigned)(c - 'A' + 10);
        else
            return -EINVAL;
    }
    *out = v;
    return 0;
}

/* Append code point cp as UTF-8; dst has room for 4 bytes. */
static size_t
json_utf8(char *dst, unsigned cp)
{
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | cp >> 6);
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | cp >> 12);
        dst[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | cp >> 18);
    dst[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    dst[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * A string at jp_p (which is at its opening quote), unescaped into a new
 * NUL-terminated buffer.  The unescaped text is never longer than the
 * escaped one, so one allocation of the remaining input's length bounds it.
 */
static char *
json_parse_string(struct json_parser *jp)
{
    const char *p = jp->jp_p + 1, *end;
    char *buf, *d;

    for (end = p; end < jp->jp_end && *end != '"'; end++)
        if (*end == '\\' && end + 1 < jp->jp_end)
            end++;
    if (end >= jp->jp_end) {
        json_fail(jp, "unterminated string");
        return NULL;
    }
    buf = malloc((size_t)(end - p) + 1);
    if (buf == NULL) {
        json_fail(jp, "out of memory");
        return NULL;
    }
    d = buf;
    while (p < end) {
        unsigned char c = (unsigned char)*p;

        jp->jp_p = p;
        if (c < 0x20) {
            json_fail(jp, "control character in a string");
            free(buf);
            return NULL;
        }
        if (c != '\\') {
            *d++ = (char)c;
            p++;
            continue;
        }
        p++;
        switch (*p) {
        case '"':
        case '\\':
        case '/':
            *d++ = *p++;
            break;
        case 'b':
            *d++ = '\b', p++;
            break;
        case 'f':
            *d++ = '\f', p++;
            break;
        case 'n':
            *d++ = '\n', p++;
            break;
        case 'r':
            *d++ = '\r', p++;
            break;
        case 't':
            *d++ = '\t', p++;
            break;
        case 'u': {
            unsigned cp, lo;

            if (end - p < 5 || json_hex4(p + 1, &cp) < 0) {
                json_fail(jp, "bad \\u escape");
                free(buf);
                return NULL;
            }
            p += 5;
            /* A high surrogate must be followed by a low one; the pair is one code point. */
            if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
                json_hex4(p + 2, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                json_fail(jp, "unpaired surrogate in a \\u escape");
                free(buf);
                return NULL;
            }
            /* 6 escaped bytes give at most 3, 12 give at most 4: the buffer is big enough. */
            d += json_utf8(d, cp);
            break;
        }
        default:
            json_fail(jp, "bad escape in a string");
            free(buf);
            return NULL;
        }
    }
    *d = '\0';
    jp->jp_p = end + 1;
    return buf;
}

/* A number as RFC 8259 writes it: checked by its grammar, then converted by strtod. */
static struct json *
json_parse_number(struct json_parser *jp)
{
    const char *p = jp->jp_p, *e = jp->jp_end;
    char tmp[64];
    struct json *j;
    size_t n;

    if (p < e && *p == '-')
        p++;
    if (p >= e || *p < '0' || *p > '9')
        return json_fail(jp, "expected a value");
    if (*p == '0')
        p++;
    else
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9')
            return json_fail(jp, "expected a digit after the decimal point");
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9')
            return json_fail(jp, "expected a digit in the exponent");
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    n = (size_t)(p - jp->jp_p);
    if (n >= sizeof(tmp))
        return json_fail(jp, "number too long");
    /* strtod needs a NUL-terminated copy: the input need not be one. */
    memcpy(tmp, jp->jp_p, n);
    tmp[n] = '\0';
    j = json_node(jp, JSON_NUMBER);
    if (j == NULL)
        return NULL;
    j->j_number = strtod(tmp, NULL);
    jp->jp_p = p;
    return j;
}

/* An array or object at jp_p (at its opening bracket). */
static struct json *
json_parse_container(struct json_parser *jp, int object)
{
    char close = object ? '}' : ']';
    struct json *j, **tail;

    if (++jp->jp_depth > JSON_MAX_DEPTH)
        return json_fail(jp, "nested too deep");
    j = json_node(jp, object ? JSON_OBJECT : JSON_ARRAY);
    if (j == NULL)
        return NULL;
    tail = &j->j_child;
    jp->jp_p++;
    json_skip_ws(jp);
    if (jp->jp_p < jp->jp_end && *jp->jp_p == close) {
        jp->jp_p++;
        jp->jp_depth--;
        return j;
    }
    for (;;) {
        char *key = NULL;
        struct json *v;

        json_skip_ws(jp);
        if (object) {
            if (jp->jp_p >= jp->jp_end || *jp->jp_p != '"') {
                json_fail(jp, "expected a member name in quotes");
                break;
            }
            key = json_parse_string(jp);
            if (key == NULL)
                break;
            json_skip_ws(jp);
            if (jp->jp_p >= jp->jp_end || *jp->jp_p != ':') {
                json_fail(jp, "expected ':' after a member name");
                free(key);
                break;
            }
            jp->jp_p++;
        }
        v = json_parse_value(jp);
        if (v == NULL) {
            free(key);
            break;
        }
        v->j_key = key;
        *tail = v;
        tail = &v->j_next;
        j->j_count++;
        json_skip_ws(jp);
        if (jp->jp_p < jp->jp_end && *jp->jp_p == close) {
            jp->jp_p++;
            jp->jp_depth--;
            return j;
        }
        if (jp->jp_p >= jp->jp_end || *jp->jp_p != ',') {
            json_fail(jp, object ? "expected ',' or '}'" : "expected ',' or ']'");
            break;
        }
        jp->jp_p++;
    }
    json_free(j);
    return NULL;
}

static struct json *
json_parse_literal(struct json_parser *jp, const char *word, enum json_type type)
{
    size_t n = strlen(word);

    if ((size_t)(jp->jp_end - jp->jp_p) < n || memcmp(jp->jp_p, word, n) != 0)
        return json_fail(jp, "expected a value");
    jp->jp_p += n;
    return json_node(jp, type);
}

static struct json *
json_parse_value(struct json_parser *jp)
{
    struct json *j;
    char *s;

    json_skip_ws(jp);
    if (jp->jp_p >= jp->jp_end)
        return json_fail(jp, "unexpected end of input");
    switch (*jp->jp_p) {
    case '{':
        return json_parse_container(jp, 1);
    case '[':
        return json_parse_container(jp, 0);
    case '"':
        s = json_parse_string(jp);
        if (s == NULL)
            return NULL;
        j = json_node(jp, JSON_STRING);
        if (j == NULL) {
            free(s);
            return NULL;
        }
        j->j_string = s;
        return j;
    case 't':
        return json_parse_literal(jp, "true", JSON_TRUE);
    case 'f':
        return json_parse_literal(jp, "false", JSON_FALSE);
    case 'n':
        return json_parse_literal(jp, "null", JSON_NULL);
    default:
        return json_parse_number(jp);
    }
}

/*
 * Parse len bytes of text as one JSON value with nothing but whitespace
 * after it.  Returns 0 with *out set (free it with json_free()), or -EINVAL
 * with err saying where and why (-ENOMEM when memory ran out).
 */
int
json_parse(const char *text, size_t len, struct json **out, struct json_error *err)
{
    struct json_parser jp = {text, text, text + len, NULL, 0};
    struct json *j;

    *out = NULL;
    j = json_parse_value(&jp);
    if (j != NULL) {
        json_skip_ws(&jp);
        if (jp.jp_p < jp.jp_end) {
            json_fail(&jp, "text after the value");
            json_free(j);
            j = NULL;
        }
    }
    if (j == NULL) {
        err->je_line = 1;
        err->je_column = 1;
        for (const char *p = text; p < jp.jp_p; p++) {
            if (*p == '\n') {
                err->je_line++;
                err->je_column = 1;
            } else {
                err->je_column++;
            }
        }
        err->je_why = jp.jp_why;
        return strcmp(jp.jp_why, "out of memory") == 0 ? -ENOMEM : -EINVAL;
    }
    *out = j;
    return 0;
}

/* Free a value and everything in it; NULL is allowed. */
void
json_free(struct json *j)
{
    while (j != NULL) {
        struct json *next = j->j_next;

        json_free(j->j_child);
        free(j->j_string);
        free(j->j_key);
        free(j);
        j = next;
    }
}

/* The member named key of an object, or NULL (also when obj is NULL or not an object). */
const struct json *
json_get(const struct json *obj, const char *key)
{
    if (obj == NULL || obj->j_type != JSON_OBJECT)
        return NULL;
    for (const struct json *m = obj->j_child; m != NULL; m = m->j_next)
        if (strcmp(m->j_key, key) == 0)
            return m;
    return NULL;
}

/* Element i of an array, or NULL. */
const struct json *
json_at(const struct json *arr, size_t i)
{
    const struct json *e;

    if (arr == NULL || arr->j_type != JSON_ARRAY)
        return NULL;
    for (e = arr->j_child; e != NULL && i > 0; e = e->j_next)
        i--;
    return e;
}
