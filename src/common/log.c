/* log.c: leveled logging to stderr, with syslog priority prefixes under the journal. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

static enum log_level log_level = LOG_LEVEL_INFO;
static int log_journal;
/* Lines without the time and level prefix off the journal: the command line's own output. */
static int log_plain;

static const char *const log_names[] = {"error", "warning", "info", "debug"};
/* syslog(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const int log_prio[] = {3, 4, 6, 7};

/*
 * systemd sets JOURNAL_STREAM to "DEV:INODE" of the stream it connected to
 * stderr.  Only when stderr still is that stream do we print <N> prefixes;
 * a child that redirected stderr elsewhere must get plain lines.
 */
static int
log_stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
        return 0;
    if (fstat(STDERR_FILENO, &st) == -1)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* Route libevent's own warnings into our log. */
static void
log_event_cb(int severity, const char *msg)
{
    switch (severity) {
    case EVENT_LOG_DEBUG:
        log_debug("libevent: %s", msg);
        break;
    case EVENT_LOG_MSG:
        log_info("libevent: %s", msg);
        break;
    case EVENT_LOG_WARN:
        log_warn("libevent: %s", msg);
        break;
    default:
        log_error("libevent: %s", msg);
        break;
    }
}

void
log_init(enum log_level level)
{
    log_level = level;
    log_journal = log_stderr_is_journal();
    event_set_log_callback(log_event_cb);
}

/*
 * Plain lines (no time, pid or level) when not under the journal, for what
 * reads as command output, such as configuration errors from -t; under the
 * journal the <N> priority prefix stays, so those are still errors there.
 */
void
log_set_plain(int on)
{
    log_plain = on;
}

/* Workers log from their own threads while the main thread may set the level: atomic. */
void
log_set_level(enum log_level level)
{
    __atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

enum log_level
log_get_level(void)
{
    return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

/* Parse a level name; returns 0 or -EINVAL. */
int
log_level_parse(const char *name, enum log_level *level)
{
    for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
        if (strcasecmp(name, log_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warn") == 0) {
        *level = LOG_LEVEL_WARNING;
        return 0;
    }
    return -EINVAL;
}

const char *
log_level_name(enum log_level level)
{
    if ((unsigned)level >= sizeof(log_names) / sizeof(log_names[0]))
        return "unknown";
    return log_names[level];
}

/*
 * Copy msg into line from off, control bytes (below 0x20, and 0x7f) written
 * as \xHH: a path from the configuration, a variable from the environment
 * or bytes from a peer then cannot forge a log line, break one in two or
 * send escape sequences to a terminal.  A backslash is left alone, so
 * what is printed stays readable; each escape is written whole or not at
 * all.  Returns the new end, at most size.
 */
static size_t
log_escape(char *line, size_t size, size_t off, const char *msg)
{
    for (; *msg != '\0' && off < size; msg++) {
        unsigned char c = (unsigned char)*msg;

        if (c >= 0x20 && c != 0x7f) {
            line[off++] = (char)c;
        } else if (off + 4 <= size) {
            snprintf(line + off, 5, "\\x%02x", c);
            off += 4;
        } else {
            break;
        }
    }
    return off;
}

/*
 * One line per call, written with a single write(2) so that lines from a
 * daemon and its tests never interleave mid-line.
 */
void
log_msg(enum log_level level, const char *fmt, ...)
{
    char line[1024], msg[1024];
    size_t off = 0;
    int saved = errno;
    va_list ap;
    int n;

    if (level > log_get_level())
        return;

    if (log_journal) {
        n = snprintf(line, sizeof(line), "<%d>", log_prio[level]);
    } else if (log_plain) {
        n = 0;
    } else {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ upechod[%ld]: %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, (long)getpid(), log_names[level]);
    }
    if (n > 0)
        off = (size_t)n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n > 0)
        off = log_escape(line, sizeof(line) - 1, off, msg);
    line[off++] = '\n';

    while (write(STDERR_FILENO, line, off) == -1 && errno == EINTR)
        ;
    errno = saved;
}
