/* configline.c: read upechod.ini and sort its lines before inih sees them. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config-internal.h"

/* Largest file config_parse_file() reads: a real one is a few kilobytes. */
#define CONFIG_FILE_MAX (1024 * 1024)

/* Whether key `name` of section `section` is a list that may go on over indented lines. */
static bool
configline_is_list(int section, const char *name)
{
    return (section == config_keys[KEY_TCP_LISTEN].k_section ||
            section == config_keys[KEY_UDP_LISTEN].k_section) &&
           strcmp(name, "listen") == 0;
}

/* A list line ended in a comma and no indented line went on with it. */
void
configline_close_list(struct config_parser *p)
{
    int id = p->p_open_id;

    if (p->p_open_line == 0)
        return;
    config_report(p, p->p_open_line, config_sections[config_keys[id].k_section],
                  config_keys[id].k_name,
                  "the list ends with a comma; continue it on an indented next line, "
                  "or remove the comma");
    p->p_key_bad[id] = true;
    p->p_open_line = 0;
}

/*
 * Sort one line (NUL-terminated in line, which is also inih's buffer) the
 * way inih would, report what is wrong with it, and leave in line what inih
 * should see: the line itself without leading whitespace, or a blank line.
 */
static void
configline_classify(struct config_parser *p, char *line)
{
    char *s = line, *e;
    char q[1024], known[256];
    int was_space = 0;

    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0' || *s == ';' || *s == '#')
        goto blank;

    /*
     * inih continues the previous key's value on an indented line: a listen
     * list may go on that way, any other value must fit on its line.
     */
    if (s > line && p->p_prev_key[0] != '\0') {
        if (p->p_section >= 0 && configline_is_list(p->p_section, p->p_prev_key)) {
            /* Cut an inline comment as inih does on key lines; hand it " items". */
            for (e = s; *e != '\0' && !(was_space && *e == ';'); e++)
                was_space = isspace((unsigned char)*e);
            while (e > s && isspace((unsigned char)e[-1]))
                e--;
            *e = '\0';
            p->p_continued = true;
            p->p_open_line = 0;
            memmove(line + 1, s, (size_t)(e - s) + 1);
            line[0] = ' ';
            strcat(line, "\n");
            return;
        }
        if (p->p_section >= 0)
            config_report(p, p->p_lineno, config_sections[p->p_section], p->p_prev_key,
                          "only a [tcp] or [udp] listen list goes on over indented lines; "
                          "put the whole value on line %d, or remove the leading whitespace",
                          p->p_prev_line);
        goto blank;
    }
    configline_close_list(p);

    if (*s == '[') {
        char *name = s + 1, *close = strchr(s, ']'), *rest;
        int i;

        p->p_prev_key[0] = '\0';
        p->p_section = SECTION_BAD;
        if (close == NULL) {
            config_report(p, p->p_lineno, NULL, NULL, "section header %s has no closing ']'",
                          config_quote(q, sizeof(q), s));
            goto blank;
        }
        for (rest = close + 1; isspace((unsigned char)*rest); rest++)
            ;
        while (isspace((unsigned char)*name))
            name++;
        e = close;
        while (e > name && isspace((unsigned char)e[-1]))
            e--;
        *e = '\0';
        if (*name == '\0') {
            config_report(p, p->p_lineno, NULL, NULL, "empty section name");
            goto blank;
        }
        for (i = 0; i < CONFIG_NSECTIONS && strcmp(config_sections[i], name) != 0; i++)
            ;
        if (i == CONFIG_NSECTIONS) {
            config_report(p, p->p_lineno, name, NULL, "unknown section; known sections are %s",
                          config_known(known, sizeof(known), -1));
            goto blank;
        }
        p->p_section = i;
        if (*rest != '\0' && *rest != ';' && *rest != '#')
            config_report(p, p->p_lineno, name, NULL, "unexpected text %s after ']'",
                          config_quote(q, sizeof(q), rest));
        /* Hand inih the bare header, which is never longer than the line it came from. */
        line[0] = '[';
        strcpy(line + 1, config_sections[i]);
        strcat(line, "]\n");
        return;
    }

    /* Find the '=' or ':' the way inih does: an inline comment is ';' after whitespace. */
    for (e = s; *e != '\0' && *e != '=' && *e != ':' && !(was_space && *e == ';'); e++)
        was_space = isspace((unsigned char)*e);
    if (*e != '=' && *e != ':') {
        config_report(p, p->p_lineno, NULL, NULL,
                      "expected \"key = value\", a [section] header or a comment, got %s",
                      config_quote(q, sizeof(q), s));
        goto blank;
    }
    {
        char *ne = e;
        size_t n;

        while (ne > s && isspace((unsigned char)ne[-1]))
            ne--;
        n = (size_t)(ne - s);
        if (n == 0) {
            config_report(p, p->p_lineno, NULL, NULL, "missing key name before '%c'", *e);
            goto blank;
        }
        /*
         * Indented, with no key above it in this section (the first key after
         * a header): inih would take it as a key, but indentation before a
         * key is an error wherever it is.
         */
        if (s > line) {
            if (p->p_section != SECTION_BAD)
                config_report(p, p->p_lineno,
                              p->p_section >= 0 ? config_sections[p->p_section] : NULL, NULL,
                              "indented line %s; only the lines that continue a [tcp] or [udp] "
                              "listen list may be indented, remove the leading whitespace",
                              config_quote(q, sizeof(q), s));
            goto blank;
        }
        if (n >= sizeof(p->p_prev_key))
            n = sizeof(p->p_prev_key) - 1;
        memcpy(p->p_prev_key, s, n);
        p->p_prev_key[n] = '\0';
        p->p_prev_line = p->p_lineno;
    }
    if (p->p_section == SECTION_NONE) {
        config_report(p, p->p_lineno, NULL, NULL,
                      "key %s comes before any [section] header; known sections are %s",
                      config_quote(q, sizeof(q), p->p_prev_key),
                      config_known(known, sizeof(known), -1));
        goto blank;
    }
    /* Keys under an unknown or broken header: that header was already reported. */
    if (p->p_section == SECTION_BAD)
        goto blank;
    memmove(line, s, strlen(s));
    strcpy(line + strlen(s), "\n");
    return;

blank:
    strcpy(line, "\n");
}

/*
 * inih's reader: one line of the input per call, like fgets().  It finds
 * every line-level error itself (inih reports only the first, and silently
 * splits or cuts lines longer than its buffer) and hands inih a blank line in
 * place of each line it rejected, so that every error is reported once.
 */
char *
configline_reader(char *str, int num, void *stream)
{
    struct config_parser *p = stream;
    const char *line, *end, *nl;
    size_t len, max;

    if (p->p_off >= p->p_len || num < 4)
        return NULL;
    line = p->p_text + p->p_off;
    nl = memchr(line, '\n', p->p_len - p->p_off);
    end = nl != NULL ? nl : p->p_text + p->p_len;
    p->p_off = (size_t)(end - p->p_text) + (nl != NULL);
    p->p_lineno++;

    if (p->p_lineno == 1 && end - line >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0)
        line += 3;
    if (end > line && end[-1] == '\r')
        end--;
    len = (size_t)(end - line);
    /* inih needs room for "\r\n\0" after the longest line. */
    max = (size_t)num - 3;

    if (memchr(line, '\0', len) != NULL) {
        config_report(p, p->p_lineno, NULL, NULL, "line contains a NUL byte");
        strcpy(str, "\n");
    } else if (len > max) {
        config_report(p, p->p_lineno, NULL, NULL, "line too long (at most %zu characters)", max);
        strcpy(str, "\n");
    } else {
        memcpy(str, line, len);
        str[len] = '\0';
        configline_classify(p, str);
    }
    return str;
}

/*
 * Read the regular file p->p_name, at most CONFIG_FILE_MAX bytes, into *bufp
 * (which the caller frees, whatever the return) and its length into *lenp.
 * Returns 0, or after reporting why, with the defaults in p->p_cf: -errno
 * when it cannot be read, -EINVAL when it is not a regular file, 1 when it
 * is too large.
 */
int
configline_read_file(struct config_parser *p, char **bufp, size_t *lenp)
{
    struct upechod_config *cf = p->p_cf;
    const char *path = p->p_name;
    struct stat st;
    char *buf = NULL;
    size_t len = 0, size = 0;
    int fd, rc = 0;

    /*
     * Only a regular file: a FIFO or a device would block the event loop on
     * reload (O_NONBLOCK keeps even the open from waiting for a writer).
     */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        rc = -errno;
    } else if (fstat(fd, &st) == -1) {
        rc = -errno;
    } else if (S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
    } else if (!S_ISREG(st.st_mode)) {
        config_defaults(cf);
        snprintf(cf->cf_file, sizeof(cf->cf_file), "%s", path);
        config_report(p, 0, NULL, NULL, "not a regular file (a FIFO, device or socket?)");
        close(fd);
        return -EINVAL;
    }
    while (rc == 0) {
        ssize_t n;

        if (len == size) {
            char *nbuf;

            if (size > CONFIG_FILE_MAX)
                break;
            size = size ? size * 2 : 8192;
            if ((nbuf = realloc(buf, size)) == NULL) {
                rc = -ENOMEM;
                break;
            }
            buf = nbuf;
        }
        n = read(fd, buf + len, size - len);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            rc = -errno;
        else if (n == 0)
            break;
        else
            len += (size_t)n;
    }
    if (fd != -1)
        close(fd);
    *bufp = buf;
    *lenp = len;

    if (rc < 0) {
        config_defaults(cf);
        snprintf(cf->cf_file, sizeof(cf->cf_file), "%s", path);
        config_report(p, 0, NULL, NULL, "cannot read: %s", strerror(-rc));
    } else if (len > CONFIG_FILE_MAX) {
        config_defaults(cf);
        snprintf(cf->cf_file, sizeof(cf->cf_file), "%s", path);
        config_report(p, 0, NULL, NULL, "larger than %d bytes; is this the right file?",
                      CONFIG_FILE_MAX);
        rc = 1;
    }
    return rc;
}
