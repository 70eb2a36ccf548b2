/* dockerfile.c — the Dockerfile subset a recipe may give (`"dockerfile"`),
 * turned into the recipe's own steps (images.c).
 *
 * FROM (one, first; a known image, an image id, or a registry reference;
 * without one, the recipe's base or debian-slim, as API.md's example has it),
 * RUN, ENV, WORKDIR, COPY (one absolute host source, allowed by the
 * config), USER, ENTRYPOINT and CMD, in shell or JSON (exec) form; comments,
 * blank lines and `\` continuations.  Anything else is refused with its
 * line number: a recipe that builds here builds as written. */
#include "sandboxd.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(why, why_len, __VA_ARGS__);                                                       \
        goto fail;                                                                                 \
    } while (0)

static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* The next word of *p, unquoting "..." and '...' (backslash escapes in
 * double quotes); NULL at the end.  Writes into the line itself. */
static char *word(char **p)
{
    char *s = *p, *out, *start;

    while (isspace((unsigned char)*s))
        s++;
    if (!*s)
        return NULL;
    start = out = s;
    while (*s && !isspace((unsigned char)*s)) {
        if (*s == '"' || *s == '\'') {
            char q = *s++;
            while (*s && *s != q) {
                if (q == '"' && *s == '\\' && s[1])
                    s++;
                *out++ = *s++;
            }
            if (*s)
                s++;
        } else {
            if (*s == '\\' && s[1])
                s++;
            *out++ = *s++;
        }
    }
    if (*s)
        s++;
    *out = '\0';
    *p = s;
    return start;
}

/* ["a", "b"] (exec form) or a shell command (shell form) as an argv. */
static json_t *argv_of(const char *rest, bool shell_wraps)
{
    json_t *j;

    if (rest[0] == '[') {
        size_t i;
        json_t *x;
        j = json_loads(rest, 0, NULL);
        if (!json_is_array(j) || json_array_size(j) == 0) {
            json_decref(j);
            return NULL;
        }
        json_array_foreach(j, i, x) if (!json_is_string(x))
        {
            json_decref(j);
            return NULL;
        }
        return j;
    }
    if (!*rest)
        return NULL;
    return shell_wraps ? json_pack("[s,s,s]", "/bin/sh", "-c", rest) : json_string(rest);
}

/* A FROM argument: an image's name or id, or a registry reference (it has
 * a `/`: host[:port]/name[:tag]). */
static json_t *base_of(const char *ref)
{
    if (strchr(ref, '/'))
        return json_pack("{s:s}", "registry", ref);
    return json_string(ref);
}

json_t *sbxd_dockerfile_parse(const char *text, char *why, size_t why_len)
{
    json_t *steps = json_array(), *base = NULL, *step = NULL;
    char *buf = strdup(text), *line, *next = NULL, *logical = NULL, empty[1] = "";
    size_t logical_len = 0;
    int lineno = 0, start_line = 0;

    if (!buf || !steps)
        BAD("out of memory");
    /* (one turn more after the last line: a continuation left open) */
    for (line = buf; line || logical; line = next) {
        char *l = line ? line : empty, *t, *instr, *rest;
        bool cont;
        size_t n;

        next = line ? strchr(line, '\n') : NULL;
        if (next)
            *next++ = '\0';

        lineno++;
        t = trim(l);
        if (!logical && (t[0] == '#' || !t[0]))
            continue;
        n = strlen(t);
        cont = line && n > 0 && t[n - 1] == '\\';
        if (cont)
            t[--n] = '\0';
        if (!logical)
            start_line = lineno;
        {
            char *grown = realloc(logical, logical_len + n + 2);
            if (!grown)
                BAD("out of memory");
            logical = grown;
            memcpy(logical + logical_len, t, n);
            logical_len += n;
            logical[logical_len++] = ' ';
            logical[logical_len] = '\0';
        }
        if (cont)
            continue;
        /* One instruction, whole. */
        rest = trim(logical);
        instr = rest;
        while (*rest && !isspace((unsigned char)*rest))
            rest++;
        if (*rest)
            *rest++ = '\0';
        rest = trim(rest);
        if (!strcasecmp(instr, "FROM")) {
            char *p = rest, *ref = word(&p), *as = word(&p);
            if (base)
                BAD("line %d: one FROM only (no multi-stage builds)", start_line);
            if (json_array_size(steps))
                BAD("line %d: FROM comes first", start_line);
            if (!ref || (as && strcasecmp(as, "AS")))
                BAD("line %d: FROM IMAGE", start_line);
            base = base_of(ref);
        } else if (!strcasecmp(instr, "RUN")) {
            json_t *a = argv_of(rest, false);
            if (!a)
                BAD("line %d: RUN needs a command", start_line);
            step = json_pack("{s:o}", "run", a);
        } else if (!strcasecmp(instr, "ENV")) {
            json_t *env = json_object();
            char *p = rest, *w = word(&p);
            if (w && !strchr(w, '=')) {
                /* ENV KEY VALUE... */
                json_object_set_new(env, w, json_string(trim(p)));
            } else {
                for (; w; w = word(&p)) {
                    char *eq = strchr(w, '=');
                    if (!eq || eq == w) {
                        json_decref(env);
                        BAD("line %d: ENV KEY=VALUE...", start_line);
                    }
                    *eq = '\0';
                    json_object_set_new(env, w, json_string(eq + 1));
                }
            }
            if (json_object_size(env) == 0) {
                json_decref(env);
                BAD("line %d: ENV KEY=VALUE...", start_line);
            }
            step = json_pack("{s:o}", "env", env);
        } else if (!strcasecmp(instr, "WORKDIR")) {
            char *p = rest, *dir = word(&p);
            if (!dir || dir[0] != '/')
                BAD("line %d: WORKDIR needs an absolute path", start_line);
            step = json_pack("{s:s}", "workdir", dir);
        } else if (!strcasecmp(instr, "COPY")) {
            char *p = rest, *src = word(&p), *dst = word(&p);
            if (src && !strncmp(src, "--", 2))
                BAD("line %d: COPY takes no options here", start_line);
            if (!src || !dst || word(&p))
                BAD("line %d: COPY SRC DST (one absolute host source)", start_line);
            step = json_pack("{s:{s:s,s:s}}", "copy", "src", src, "dst", dst);
        } else if (!strcasecmp(instr, "USER")) {
            char *p = rest, *u = word(&p);
            if (!u)
                BAD("line %d: USER NAME[:GROUP]", start_line);
            step = json_pack("{s:s}", "user", u);
        } else if (!strcasecmp(instr, "ENTRYPOINT") || !strcasecmp(instr, "CMD")) {
            json_t *a = argv_of(rest, true);
            if (!a)
                BAD("line %d: %s needs a command", start_line, instr);
            step = json_pack("{s:o}", !strcasecmp(instr, "CMD") ? "cmd" : "entrypoint", a);
        } else {
            BAD("line %d: %s is not supported (FROM, RUN, ENV, WORKDIR, COPY, USER, "
                "ENTRYPOINT, CMD)",
                start_line, instr);
        }
        if (step) {
            json_array_append_new(steps, step);
            step = NULL;
        }
        free(logical);
        logical = NULL;
        logical_len = 0;
        if (!line)
            break;
    }
    free(buf);
    return json_pack("{s:o?,s:o}", "base", base, "steps", steps);
fail:
    free(buf);
    free(logical);
    json_decref(steps);
    json_decref(base);
    return NULL;
}
