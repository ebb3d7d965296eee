/* json.h: a small strict JSON reader, for the files upecho-bench --json writes. */
#ifndef UPECHOD_JSON_H
#define UPECHOD_JSON_H

#include <stddef.h>

/* Containers nest at most this deep; deeper input is refused, not recursed into. */
#define JSON_MAX_DEPTH 64

enum json_type {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
};

/* A parsed value; an array's elements and an object's members are a list of children. */
struct json {
    enum json_type j_type;
    double j_number;
    char *j_string;       /* JSON_STRING: the value, NUL-terminated (an embedded \u0000 ends it) */
    char *j_key;          /* a member of an object: its name */
    struct json *j_child; /* JSON_ARRAY, JSON_OBJECT: the first element or member */
    struct json *j_next;  /* the next element or member of the container */
    size_t j_count;       /* JSON_ARRAY, JSON_OBJECT: how many children */
};

/* Where and why parsing stopped. */
struct json_error {
    unsigned je_line;   /* 1-based */
    unsigned je_column; /* 1-based, in bytes */
    const char *je_why;
};

int json_parse(const char *text, size_t len, struct json **out, struct json_error *err);
void json_free(struct json *j);
const struct json *json_get(const struct json *obj, const char *key);
const struct json *json_at(const struct json *arr, size_t i);

#endif
