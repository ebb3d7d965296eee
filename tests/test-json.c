/* test-json.c: the JSON reader upecho-bench --plot uses, on good and broken input. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check-main.h"
#include "json.h"

static struct json *
parse_ok(const char *text)
{
    struct json *j = NULL;
    struct json_error je = {0, 0, NULL};
    int rc = json_parse(text, strlen(text), &j, &je);

    ck_assert_msg(rc == 0, "'%s' refused at %u:%u: %s", text, je.je_line, je.je_column,
                  je.je_why != NULL ? je.je_why : "?");
    ck_assert_ptr_nonnull(j);
    return j;
}

/* Parsing must fail at line:column; the reason must mention want. */
static void
parse_bad(const char *text, unsigned line, unsigned column, const char *want)
{
    struct json *j = (struct json *)1;
    struct json_error je = {0, 0, NULL};
    int rc = json_parse(text, strlen(text), &j, &je);

    ck_assert_msg(rc == -EINVAL, "'%s' accepted", text);
    ck_assert_ptr_null(j);
    ck_assert_msg(je.je_line == line && je.je_column == column, "'%s': at %u:%u, not %u:%u", text,
                  je.je_line, je.je_column, line, column);
    ck_assert_msg(strstr(je.je_why, want) != NULL, "'%s': '%s' lacks '%s'", text, je.je_why, want);
}

START_TEST(test_json_document)
{
    struct json *j = parse_ok(" {\"label\":null,\"n\":-12.5e2,\"ok\":true,\"no\":false,"
                              "\"pts\":[[0,7534],[99.9,1017855]],\"tl\":[{\"second\":1}],"
                              "\"empty\":{},\"none\":[]}\n");
    const struct json *pts = json_get(j, "pts");

    ck_assert_int_eq(j->j_type, JSON_OBJECT);
    ck_assert_uint_eq(j->j_count, 8);
    ck_assert_int_eq(json_get(j, "label")->j_type, JSON_NULL);
    ck_assert(json_get(j, "n")->j_number == -1250.0);
    ck_assert_int_eq(json_get(j, "ok")->j_type, JSON_TRUE);
    ck_assert_int_eq(json_get(j, "no")->j_type, JSON_FALSE);
    ck_assert_uint_eq(pts->j_count, 2);
    ck_assert(json_at(json_at(pts, 1), 0)->j_number == 99.9);
    ck_assert(json_at(json_at(pts, 1), 1)->j_number == 1017855.0);
    ck_assert_ptr_null(json_at(pts, 2));
    ck_assert(json_get(json_at(json_get(j, "tl"), 0), "second")->j_number == 1.0);
    ck_assert_uint_eq(json_get(j, "empty")->j_count, 0);
    ck_assert_uint_eq(json_get(j, "none")->j_count, 0);
    ck_assert_ptr_null(json_get(j, "missing"));
    ck_assert_ptr_null(json_get(pts, "label"));
    json_free(j);
}
END_TEST

START_TEST(test_json_strings)
{
    struct json *j = parse_ok("[\"a\\\"b\\\\c\\/d\\n\\t\", \"\\u00e9\\u20ac\", \"\\ud83d\\ude00\", "
                              "\"caf\xc3\xa9\"]");

    ck_assert_str_eq(json_at(j, 0)->j_string, "a\"b\\c/d\n\t");
    ck_assert_str_eq(json_at(j, 1)->j_string, "\xc3\xa9\xe2\x82\xac");
    ck_assert_str_eq(json_at(j, 2)->j_string, "\xf0\x9f\x98\x80");
    ck_assert_str_eq(json_at(j, 3)->j_string, "caf\xc3\xa9");
    json_free(j);
}
END_TEST

START_TEST(test_json_errors)
{
    parse_bad("", 1, 1, "end of input");
    parse_bad("{\"a\":1,}", 1, 8, "member name");
    parse_bad("{\"a\":1,\n\"b\" 2}", 2, 5, "':'");
    parse_bad("[1 2]", 1, 4, "','");
    parse_bad("{\"a\":1} x", 1, 9, "after the value");
    parse_bad("01", 1, 2, "after the value");
    parse_bad("[1.]", 1, 2, "decimal point");
    parse_bad("[1e]", 1, 2, "exponent");
    parse_bad("[tru]", 1, 2, "expected a value");
    parse_bad("[\"abc", 1, 2, "unterminated");
    parse_bad("[\"a\tb\"]", 1, 4, "control character");
    parse_bad("[\"\\x\"]", 1, 3, "bad escape");
    parse_bad("[\"\\u12g4\"]", 1, 3, "\\u escape");
    parse_bad("[\"\\ud83d\"]", 1, 3, "surrogate");
    parse_bad("{\"a\":[1,{\"b\":}]}", 1, 14, "expected a value");
}
END_TEST

/* Deep nesting is refused with an error, not a crash from recursion. */
START_TEST(test_json_depth)
{
    char deep[2 * JSON_MAX_DEPTH + 8];
    struct json *j = NULL;
    struct json_error je;
    size_t n = JSON_MAX_DEPTH;

    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = '\0';
    ck_assert_int_eq(json_parse(deep, 2 * n, &j, &je), 0);
    json_free(j);
    memset(deep, '[', n + 1);
    memset(deep + n + 1, ']', n + 1);
    deep[2 * n + 2] = '\0';
    ck_assert_int_eq(json_parse(deep, 2 * n + 2, &j, &je), -EINVAL);
    ck_assert_str_eq(je.je_why, "nested too deep");
}
END_TEST

/* The length bounds the text: a value cut short is an error even with more bytes after it. */
START_TEST(test_json_length)
{
    struct json *j = NULL;
    struct json_error je;

    ck_assert_int_eq(json_parse("[1,2]garbage", 5, &j, &je), 0);
    ck_assert_uint_eq(j->j_count, 2);
    json_free(j);
    ck_assert_int_eq(json_parse("[1,2]", 4, &j, &je), -EINVAL);
    ck_assert_int_eq(json_parse("\"abc\"", 4, &j, &je), -EINVAL);
    ck_assert_int_eq(json_parse("123", 2, &j, &je), 0);
    ck_assert(j->j_number == 12.0);
    json_free(j);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_json_document);
    tcase_add_test(tc, test_json_strings);
    tcase_add_test(tc, test_json_errors);
    tcase_add_test(tc, test_json_depth);
    tcase_add_test(tc, test_json_length);
    suite_add_tcase(s, tc);
    return check_main(s, CK_NORMAL);
}
