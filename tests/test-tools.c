/* test-tools.c: upecho and upecho-bench end to end, against upechod and a corrupting server. */
#include <arpa/inet.h>
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

/* Exit statuses the tools document. */
#define EXIT_WRONG 1
#define EXIT_USAGE 64
#define EXIT_UNAVAILABLE 69

/* No single tool run may take longer than this. */
#define TOOL_TIMEOUT_MS 30000

/*
 * upecho-bench's UDP run can send over 10,000 datagrams a second from one
 * socket, rate_limit_per_port's default: a loop guard would take that for a
 * loop (test-udpguard tests the guard), so it is off here.
 */
static const char tools_ini[] = "[tcp]\nlisten = 127.0.0.1:0\n"
                                "[udp]\nlisten = 127.0.0.1:0\nrate_limit_per_port = 0\n"
                                "[unix]\nenabled = yes\npath = @DIR@/echo.sock\nmode = 0600\n";

static const char *const transports[] = {"tcp", "udp", "unix"};

/* What one run of a tool left behind. */
struct run {
    int r_status; /* exit code, or 128 + signal */
    char *r_out;
    size_t r_out_len;
    char *r_err;
};

static const char *
env_path(const char *name)
{
    const char *p = getenv(name);

    ck_assert_msg(p != NULL && p[0] != '\0', "%s is not set", name);
    return p;
}

/* The whole file, NUL-terminated (binary data may contain NULs: use *len). */
static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len != NULL)
        *len = (size_t)n;
    return buf;
}

/*
 * Run argv with input on stdin (NULL: /dev/null), stdout and stderr in
 * files, and wait for it, killing it after TOOL_TIMEOUT_MS (a failure).
 */
static void
run_tool(const char *const *argv, const char *input, size_t input_len, struct run *r)
{
    char dir[] = "/tmp/upecho-tools-XXXXXX", in[64], out[64], err[64];
    long long deadline;
    pid_t pid;
    int st;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(in, sizeof(in), "%s/in", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(err, sizeof(err), "%s/err", dir);
    if (input != NULL) {
        FILE *f = fopen(in, "wb");

        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(input, 1, input_len, f), input_len);
        fclose(f);
    }
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int i = open(input != NULL ? in : "/dev/null", O_RDONLY);
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        if (i < 0 || o < 0 || e < 0 || dup2(i, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    deadline = now_ms() + TOOL_TIMEOUT_MS;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);

        if (w == pid)
            break;
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            ck_abort_msg("%s did not finish within %d ms", argv[0], TOOL_TIMEOUT_MS);
        }
        usleep(10000);
    }
    r->r_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r->r_out = slurp(out, &r->r_out_len);
    r->r_err = slurp(err, NULL);
    unlink(in);
    unlink(out);
    unlink(err);
    rmdir(dir);
}

static void
run_free(struct run *r)
{
    free(r->r_out);
    free(r->r_err);
}

/* A corrupting echo server, started with `every` and killed with its parent. */
struct corrupt {
    pid_t c_pid;
    int c_tcp_port;
    int c_udp_port;
};

static void
corrupt_start(struct corrupt *c, unsigned every)
{
    const char *path = env_path("CORRUPT_SERVER");
    char arg[16];
    int p[2];
    FILE *f;

    snprintf(arg, sizeof(arg), "%u", every);
    ck_assert_int_eq(pipe(p), 0);
    c->c_pid = fork();
    ck_assert_int_ge(c->c_pid, 0);
    if (c->c_pid == 0) {
        /* If a failed assertion ends the test process, the server goes with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(path, path, arg, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    f = fdopen(p[0], "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%d %d", &c->c_tcp_port, &c->c_udp_port), 2);
    fclose(f);
    ck_assert_int_gt(c->c_tcp_port, 0);
    ck_assert_int_gt(c->c_udp_port, 0);
}

static void
corrupt_stop(struct corrupt *c)
{
    kill(c->c_pid, SIGKILL);
    waitpid(c->c_pid, NULL, 0);
}

static void
start_daemon(struct daemon_proc *dp)
{
    start_or_fail(dp, tools_ini);
    ck_assert_int_gt(dp->dp_tcp_port, 0);
    ck_assert_int_gt(dp->dp_udp_port, 0);
    ck_assert(dp->dp_unix_path[0] != '\0');
}

/* The daemon's target URL for transport i of transports[]. */
static void
daemon_target(const struct daemon_proc *dp, int i, char *buf, size_t size)
{
    if (i == 0)
        snprintf(buf, size, "tcp://127.0.0.1:%d", dp->dp_tcp_port);
    else if (i == 1)
        snprintf(buf, size, "udp://127.0.0.1:%d", dp->dp_udp_port);
    else
        snprintf(buf, size, "unix://%s", dp->dp_unix_path);
}

/* Lines chosen to catch a sloppy transform: near-letters, 8-bit bytes, an empty line. */
static const char upecho_input[] = "hello world\n"
                                   "MiXeD 123 `@[{z}~\n"
                                   "\xc3\xa9t\xc3\xa9 caf\xc3\xa9\n"
                                   "\n"
                                   "tab\there\r\n"
                                   "last line without newline";
static const char upecho_expect[] = "HELLO WORLD\n"
                                    "MIXED 123 `@[{Z}~\n"
                                    "\xc3\xa9T\xc3\xa9 CAF\xc3\xa9\n"
                                    "\n"
                                    "TAB\tHERE\r\n"
                                    "LAST LINE WITHOUT NEWLINE\n";

START_TEST(test_upecho_daemon)
{
    struct daemon_proc dp;
    struct run r;
    char target[256];
    const char *argv[] = {env_path("UPECHO"), target, NULL};

    start_daemon(&dp);
    daemon_target(&dp, _i, target, sizeof(target));
    run_tool(argv, upecho_input, sizeof(upecho_input) - 1, &r);
    ck_assert_msg(r.r_status == 0, "%s: exit %d: %s", transports[_i], r.r_status, r.r_err);
    ck_assert_uint_eq(r.r_out_len, sizeof(upecho_expect) - 1);
    ck_assert_int_eq(memcmp(r.r_out, upecho_expect, r.r_out_len), 0);
    ck_assert_str_eq(r.r_err, "");
    run_free(&r);
    daemon_stop(&dp);
}
END_TEST

START_TEST(test_upecho_message_option)
{
    struct daemon_proc dp;
    struct run r;
    char target[256];
    const char *argv[] = {env_path("UPECHO"), "-t",    "2",    "-m", "one",
                          "--message",        "Two 2", target, NULL};

    start_daemon(&dp);
    daemon_target(&dp, 0, target, sizeof(target));
    /* Stdin must be ignored when messages are given. */
    run_tool(argv, "ignored\n", 8, &r);
    ck_assert_msg(r.r_status == 0, "exit %d: %s", r.r_status, r.r_err);
    ck_assert_str_eq(r.r_out, "ONE\nTWO 2\n");
    run_free(&r);
    daemon_stop(&dp);
}
END_TEST

/* Every 5th byte damaged: the first line of 10 bytes already comes back wrong. */
START_TEST(test_upecho_corrupt)
{
    struct corrupt c;
    struct run r;
    char target[64];
    const char *argv[] = {env_path("UPECHO"), "-t", "2", target, NULL};

    corrupt_start(&c, 5);
    snprintf(target, sizeof(target), "%s://127.0.0.1:%d", _i == 0 ? "tcp" : "udp",
             _i == 0 ? c.c_tcp_port : c.c_udp_port);
    run_tool(argv, "abcdefghij\nklm\n", 15, &r);
    ck_assert_msg(r.r_status == EXIT_WRONG, "exit %d: %s", r.r_status, r.r_err);
    ck_assert_msg(strstr(r.r_err, "wrong reply to message 1") != NULL, "stderr: %s", r.r_err);
    /* One line of reason, and no wrong reply passed off on stdout. */
    ck_assert_ptr_eq(strchr(r.r_err, '\n'), r.r_err + strlen(r.r_err) - 1);
    ck_assert_str_eq(r.r_out, "");
    run_free(&r);
    corrupt_stop(&c);
}
END_TEST

/* Nobody listening: TCP and unix fail to connect, UDP hears port unreachable. */
START_TEST(test_upecho_unreachable)
{
    struct run r;
    char target[64];
    const char *argv[] = {env_path("UPECHO"), "-t", "2", "-m", "x", target, NULL};
    int port, fd = tcp_listen_on(AF_INET, 0, &port);

    ck_assert_int_ge(fd, 0);
    close(fd);
    if (_i == 2)
        snprintf(target, sizeof(target), "unix:///nonexistent/upechod.sock");
    else
        snprintf(target, sizeof(target), "%s://127.0.0.1:%d", transports[_i], port);
    run_tool(argv, NULL, 0, &r);
    ck_assert_msg(r.r_status == EXIT_UNAVAILABLE, "%s: exit %d: %s", target, r.r_status, r.r_err);
    ck_assert_msg(strstr(r.r_err, "upecho: ") == r.r_err, "stderr: %s", r.r_err);
    run_free(&r);
}
END_TEST

START_TEST(test_upecho_usage)
{
    struct run r;
    const char *bad_target[] = {env_path("UPECHO"), "http://127.0.0.1:1", NULL};
    const char *no_target[] = {env_path("UPECHO"), NULL};
    const char *help[] = {env_path("UPECHO"), "-h", NULL};

    run_tool(bad_target, NULL, 0, &r);
    ck_assert_int_eq(r.r_status, EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(r.r_err, "tcp://"));
    run_free(&r);
    run_tool(no_target, NULL, 0, &r);
    ck_assert_int_eq(r.r_status, EXIT_USAGE);
    run_free(&r);
    run_tool(help, NULL, 0, &r);
    ck_assert_int_eq(r.r_status, 0);
    ck_assert_ptr_nonnull(strstr(r.r_out, "usage: upecho"));
    run_free(&r);
}
END_TEST

/* A strict little JSON parser: returns the end of the value at p, or NULL if malformed. */
static const char *json_value(const char *p);

static const char *
json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *
json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    while (*p != '"') {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)p[i]))
                        return NULL;
                p += 4;
            } else if (strchr("\"\\/bfnrt", *p) == NULL || *p == '\0') {
                return NULL;
            }
        }
        p++;
    }
    return p + 1;
}

static const char *
json_number(const char *p)
{
    const char *s = p;

    if (*p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return NULL;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return p > s ? p : NULL;
}

static const char *
json_container(const char *p, char close, int keyed)
{
    p = json_ws(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (keyed) {
            p = json_string(p);
            if (p == NULL)
                return NULL;
            p = json_ws(p);
            if (*p++ != ':')
                return NULL;
        }
        p = json_value(json_ws(p));
        if (p == NULL)
            return NULL;
        p = json_ws(p);
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
        p = json_ws(p);
    }
}

static const char *
json_value(const char *p)
{
    p = json_ws(p);
    switch (*p) {
    case '{':
        return json_container(p, '}', 1);
    case '[':
        return json_container(p, ']', 0);
    case '"':
        return json_string(p);
    case 't':
        return strncmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f':
        return strncmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n':
        return strncmp(p, "null", 4) == 0 ? p + 4 : NULL;
    default:
        return json_number(p);
    }
}

/* Check the whole text is one JSON object and nothing else. */
static void
json_check(const char *text)
{
    const char *end;

    ck_assert_msg(json_ws(text)[0] == '{', "not a JSON object: %s", text);
    end = json_value(text);
    ck_assert_msg(end != NULL, "malformed JSON: %s", text);
    ck_assert_msg(*json_ws(end) == '\0', "trailing text after JSON: %s", end);
}

/* The text right after "key": in the object (searched from `in`, or the whole text). */
static const char *
json_find(const char *text, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(text, pat);
    ck_assert_msg(p != NULL, "JSON lacks key %s: %s", key, text);
    return p + strlen(pat);
}

static double
json_num(const char *text, const char *key)
{
    const char *p = json_find(text, key);
    char *end;
    double v = strtod(p, &end);

    ck_assert_msg(end != p, "%s is not a number", key);
    return v;
}

/* Every key the README documents for --json. */
static const char *const bench_keys[] = {
    "label",
    "target",
    "transport",
    "connections",
    "threads",
    "size",
    "pipeline",
    "rate",
    "connect_rate",
    "duration_s",
    "interrupted",
    "messages",
    "messages_per_s",
    "bytes_sent",
    "bytes_received",
    "mb_per_s",
    "latency_ns",
    "connect_ns",
    "latency_percentiles",
    "timeline",
    "connections_opened",
    "connect_failures",
    "resets",
    "timeouts",
    "lost",
    "late",
    "errors",
    "mismatches",
    "mismatched_messages",
    "first_mismatch",
    "ok",
};
static const char *const hist_keys[] = {"count", "min", "mean",  "p50",
                                        "p90",   "p99", "p99_9", "max"};

static void
bench_check_keys(const char *json)
{
    json_check(json);
    for (size_t i = 0; i < sizeof(bench_keys) / sizeof(bench_keys[0]); i++)
        json_find(json, bench_keys[i]);
    for (size_t i = 0; i < sizeof(hist_keys) / sizeof(hist_keys[0]); i++) {
        json_find(json_find(json, "latency_ns"), hist_keys[i]);
        json_find(json_find(json, "connect_ns"), hist_keys[i]);
    }
}

START_TEST(test_bench_daemon)
{
    struct daemon_proc dp;
    struct run r;
    char target[256];
    const char *argv[] = {env_path("UPECHO_BENCH"),
                          "-c",
                          "20",
                          "-t",
                          "2",
                          "-d",
                          "1",
                          "-p",
                          "2",
                          "-s",
                          "100",
                          "-q",
                          "--json",
                          target,
                          NULL};
    double msgs;

    start_daemon(&dp);
    daemon_target(&dp, _i, target, sizeof(target));
    run_tool(argv, NULL, 0, &r);
    ck_assert_msg(r.r_status == 0, "%s: exit %d: %s%s", transports[_i], r.r_status, r.r_out,
                  r.r_err);
    bench_check_keys(r.r_out);
    msgs = json_num(r.r_out, "messages");
    ck_assert_msg(msgs > 100, "%s: only %.0f messages", transports[_i], msgs);
    ck_assert(json_num(r.r_out, "mismatches") == 0);
    ck_assert(json_num(r.r_out, "errors") == 0);
    ck_assert(json_num(r.r_out, "connections_opened") == 20);
    ck_assert(json_num(r.r_out, "bytes_received") == msgs * 100);
    ck_assert(json_num(json_find(r.r_out, "latency_ns"), "count") == msgs);
    ck_assert(json_num(json_find(r.r_out, "latency_ns"), "p50") > 0);
    ck_assert_ptr_nonnull(strstr(r.r_out, "\"first_mismatch\":null"));
    ck_assert_ptr_nonnull(strstr(r.r_out, "\"ok\":true"));
    ck_assert_str_eq(r.r_err, "");
    run_free(&r);
    daemon_stop(&dp);
}
END_TEST

/* A run by message count sends exactly that many; the text summary says OK. */
START_TEST(test_bench_count)
{
    struct daemon_proc dp;
    struct run r;
    char target[256];
    const char *argv[] = {env_path("UPECHO_BENCH"),
                          "-c",
                          "7",
                          "-n",
                          "2000",
                          "-s",
                          "33",
                          "-p",
                          "3",
                          "-q",
                          target,
                          NULL};

    start_daemon(&dp);
    daemon_target(&dp, 0, target, sizeof(target));
    run_tool(argv, NULL, 0, &r);
    ck_assert_msg(r.r_status == 0, "exit %d: %s%s", r.r_status, r.r_out, r.r_err);
    ck_assert_msg(strstr(r.r_out, "messages     2000,") != NULL, "%s", r.r_out);
    ck_assert_msg(strstr(r.r_out, "result       OK\n") != NULL, "%s", r.r_out);
    ck_assert_msg(strstr(r.r_out, "latency      min ") != NULL, "%s", r.r_out);
    run_free(&r);
    daemon_stop(&dp);
}
END_TEST

/* Open loop: about the asked rate, and progress lines on stderr without -q. */
START_TEST(test_bench_rate)
{
    struct daemon_proc dp;
    struct run r;
    char target[256];
    const char *argv[] = {
        env_path("UPECHO_BENCH"), "-c", "10", "-R", "2000", "-d", "2", "--json", target, NULL};
    double msgs;

    start_daemon(&dp);
    daemon_target(&dp, 0, target, sizeof(target));
    run_tool(argv, NULL, 0, &r);
    ck_assert_msg(r.r_status == 0, "exit %d: %s%s", r.r_status, r.r_out, r.r_err);
    msgs = json_num(r.r_out, "messages");
    ck_assert_msg(msgs >= 3000 && msgs <= 4400, "%.0f messages at 2000/s for 2 s", msgs);
    ck_assert_msg(strstr(r.r_err, "msg/s") != NULL, "no progress line: %s", r.r_err);
    run_free(&r);
    daemon_stop(&dp);
}
END_TEST

START_TEST(test_bench_corrupt)
{
    struct corrupt c;
    struct run r;
    char target[64];
    const char *argv[] = {
        env_path("UPECHO_BENCH"), "-c", "4", "-d", "1", "-q", "--json", target, NULL};

    corrupt_start(&c, 1000);
    snprintf(target, sizeof(target), "%s://127.0.0.1:%d", _i == 0 ? "tcp" : "udp",
             _i == 0 ? c.c_tcp_port : c.c_udp_port);
    run_tool(argv, NULL, 0, &r);
    ck_assert_msg(r.r_status == EXIT_WRONG, "exit %d: %s%s", r.r_status, r.r_out, r.r_err);
    bench_check_keys(r.r_out);
    ck_assert(json_num(r.r_out, "messages") > 0);
    ck_assert_msg(json_num(r.r_out, "mismatches") > 0, "%s", r.r_out);
    ck_assert(json_num(r.r_out, "mismatched_messages") > 0);
    ck_assert(json_num(json_find(r.r_out, "first_mismatch"), "connection") >= 0);
    ck_assert_ptr_nonnull(strstr(r.r_out, "\"ok\":false"));
    ck_assert_ptr_nonnull(strstr(r.r_err, "wrong reply bytes"));
    run_free(&r);
    corrupt_stop(&c);
}
END_TEST

START_TEST(test_bench_refused)
{
    struct run r;
    char target[64];
    const char *argv[] = {
        env_path("UPECHO_BENCH"), "-c", "5", "-d", "1", "-q", "--json", target, NULL};
    int port, fd = tcp_listen_on(AF_INET, 0, &port);

    ck_assert_int_ge(fd, 0);
    close(fd);
    snprintf(target, sizeof(target), "tcp://127.0.0.1:%d", port);
    run_tool(argv, NULL, 0, &r);
    ck_assert_msg(r.r_status == EXIT_WRONG, "exit %d: %s%s", r.r_status, r.r_out, r.r_err);
    ck_assert(json_num(r.r_out, "connect_failures") == 5);
    ck_assert(json_num(r.r_out, "errors") == 5);
    ck_assert(json_num(r.r_out, "messages") == 0);
    run_free(&r);
}
END_TEST

/*
 * A peer that takes requests and never answers: UDP requests are counted
 * lost after the timeout, stream connections (accepted by the kernel, never
 * read) time out.  Both are errors.
 */
START_TEST(test_bench_silent)
{
    struct run r;
    char target[64];
    const char *argv[] = {env_path("UPECHO_BENCH"),
                          "-c",
                          "3",
                          "-d",
                          "0.5",
                          "--timeout",
                          "200ms",
                          "-q",
                          "--json",
                          target,
                          NULL};
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int port, fd;

    if (_i == 0) {
        fd = tcp_listen_on(AF_INET, 0, &port);
        ck_assert_int_ge(fd, 0);
    } else {
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
        port = ntohs(sin.sin_port);
    }
    snprintf(target, sizeof(target), "%s://127.0.0.1:%d", transports[_i], port);
    run_tool(argv, NULL, 0, &r);
    ck_assert_msg(r.r_status == EXIT_WRONG, "exit %d: %s%s", r.r_status, r.r_out, r.r_err);
    ck_assert(json_num(r.r_out, "messages") == 0);
    ck_assert(json_num(r.r_out, "connections_opened") == 3);
    if (_i == 0)
        ck_assert_msg(json_num(r.r_out, "timeouts") == 3, "%s", r.r_out);
    else
        ck_assert_msg(json_num(r.r_out, "lost") >= 3, "%s", r.r_out);
    ck_assert(json_num(r.r_out, "errors") >= 3);
    run_free(&r);
    close(fd);
}
END_TEST

START_TEST(test_bench_usage)
{
    struct run r;
    const char *bad[][8] = {
        {env_path("UPECHO_BENCH"), "tcp://127.0.0.1", NULL},
        {env_path("UPECHO_BENCH"), "-c", "0", "tcp://127.0.0.1:7", NULL},
        {env_path("UPECHO_BENCH"), "-s", "4", "udp://127.0.0.1:7", NULL},
        {env_path("UPECHO_BENCH"), "--source", "127.0.0.2", "unix:///x", NULL},
        {env_path("UPECHO_BENCH"), "--source", "::1", "tcp://127.0.0.1:7", NULL},
        {env_path("UPECHO_BENCH"), "-d", "soon", "tcp://127.0.0.1:7", NULL},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run_tool(bad[i], NULL, 0, &r);
        ck_assert_msg(r.r_status == EXIT_USAGE, "case %zu: exit %d", i, r.r_status);
        ck_assert_msg(strncmp(r.r_err, "upecho-bench: ", 14) == 0, "case %zu: %s", i, r.r_err);
        run_free(&r);
    }
}
END_TEST

/* Connections spread over several loopback source addresses all work. */
START_TEST(test_bench_sources)
{
    struct daemon_proc dp;
    struct run r;
    char target[256];
    const char *argv[] = {env_path("UPECHO_BENCH"),
                          "-c",
                          "12",
                          "-n",
                          "1200",
                          "--source",
                          "127.0.0.2-127.0.0.4",
                          "--source",
                          "127.0.0.5",
                          "-q",
                          "--json",
                          target,
                          NULL};

    start_daemon(&dp);
    daemon_target(&dp, _i, target, sizeof(target));
    run_tool(argv, NULL, 0, &r);
    ck_assert_msg(r.r_status == 0, "exit %d: %s%s", r.r_status, r.r_out, r.r_err);
    ck_assert(json_num(r.r_out, "messages") == 1200);
    ck_assert(json_num(r.r_out, "connections_opened") == 12);
    run_free(&r);
    daemon_stop(&dp);
}
END_TEST

static Suite *
tools_suite(void)
{
    Suite *s = suite_create("tools");
    TCase *up = tcase_create("upecho");
    TCase *bench = tcase_create("upecho-bench");

    tcase_set_timeout(up, 60);
    tcase_add_loop_test(up, test_upecho_daemon, 0, 3);
    tcase_add_test(up, test_upecho_message_option);
    tcase_add_loop_test(up, test_upecho_corrupt, 0, 2);
    tcase_add_loop_test(up, test_upecho_unreachable, 0, 3);
    tcase_add_test(up, test_upecho_usage);
    suite_add_tcase(s, up);

    tcase_set_timeout(bench, 60);
    tcase_add_loop_test(bench, test_bench_daemon, 0, 3);
    tcase_add_test(bench, test_bench_count);
    tcase_add_test(bench, test_bench_rate);
    tcase_add_loop_test(bench, test_bench_corrupt, 0, 2);
    tcase_add_test(bench, test_bench_refused);
    tcase_add_loop_test(bench, test_bench_silent, 0, 2);
    tcase_add_test(bench, test_bench_usage);
    tcase_add_loop_test(bench, test_bench_sources, 0, 2);
    suite_add_tcase(s, bench);
    return s;
}

int
main(void)
{
    return check_main(tools_suite(), CK_NORMAL);
}
