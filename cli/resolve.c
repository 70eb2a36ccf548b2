/* resolve.c — what a SANDBOX argument names: an id, a unique prefix of one,
 * or app/name; and what a sandbox that failed to start says about it. */
#include "cli.h"

#include <errno.h>
#include <string.h>

#define ID_LEN 25 /* "sb-" + 22 base62 characters */

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]))
            return false;
    return true;
}

int cli_get_sandbox(struct cli_client *c, const char *id, json_t **ret, struct cli_error *err)
{
    _cleanup_free_ char *esc = cli_escape(id);
    _cleanup_free_ char *path = cli_strdupf("/v1/sandboxes/%s", esc ? esc : "");

    return cli_call(c, "GET", path, NULL, ret, err);
}

static int by_name(struct cli_client *c, const char *app, const char *name, char **ret_id,
                   struct cli_error *err)
{
    _cleanup_free_ char *eapp = cli_escape(app), *ename = cli_escape(name);
    _cleanup_free_ char *path =
        cli_strdupf("/v1/apps/%s/sandboxes/%s", eapp ? eapp : "", ename ? ename : "");
    _cleanup_json_ json_t *rec = NULL;
    int r = cli_call(c, "GET", path, NULL, &rec, err);

    if (r < 0)
        return r;
    if (!cli_str(rec, "sandbox_id"))
        return cli_error_set(err, 0, "sandboxd's answer for %s/%s has no sandbox_id", app, name);
    *ret_id = strdup(cli_str(rec, "sandbox_id"));
    return *ret_id ? 0 : cli_error_errno(err, ENOMEM, "resolve");
}

int cli_resolve_sandbox(struct cli_client *c, const char *arg, char **ret_id, struct cli_error *err)
{
    const char *slash = strchr(arg, '/');
    _cleanup_json_ json_t *list = NULL;
    _cleanup_free_ char *full_prefix = NULL;
    struct cli_buf names = {0};
    const char *match = NULL;
    size_t i, n = 0;
    json_t *sb;
    int r;

    if (!*arg)
        return cli_error_set(err, 0, "an empty SANDBOX names nothing");
    if (slash) {
        _cleanup_free_ char *app = strndup(arg, (size_t)(slash - arg));
        if (!app)
            return cli_error_errno(err, ENOMEM, "resolve");
        if (!valid_name(app, strlen(app)) || !valid_name(slash + 1, strlen(slash + 1)))
            return cli_error_set(err, 0, "`%s` is not an id, an id prefix or APP/NAME", arg);
        r = by_name(c, app, slash + 1, ret_id, err);
        if (r < 0 && err->status == 404)
            cli_error_set(err, 404, "no running sandbox named `%s` in app `%s`", slash + 1, app);
        return r;
    }
    /* A whole id is used as it is: the daemon says if it does not know it. */
    if (strlen(arg) == ID_LEN && !strncmp(arg, "sb-", 3)) {
        *ret_id = strdup(arg);
        return *ret_id ? 0 : cli_error_errno(err, ENOMEM, "resolve");
    }
    r = cli_call(c, "GET", "/v1/sandboxes?state=all", NULL, &list, err);
    if (r < 0)
        return r;
    full_prefix = strncmp(arg, "sb-", 3) ? cli_strdupf("sb-%s", arg) : NULL;
    json_array_foreach(json_object_get(list, "sandboxes"), i, sb)
    {
        const char *id = cli_str(sb, "sandbox_id");
        if (!id || (strncmp(id, arg, strlen(arg)) &&
                    (!full_prefix || strncmp(id, full_prefix, strlen(full_prefix)))))
            continue;
        match = id;
        if (n < 5) {
            cli_buf_append(&names, n ? ", " : "", n ? 2 : 0);
            cli_buf_append(&names, id, strlen(id));
        }
        n++;
    }
    if (n > 1) {
        cli_error_set(err, 0,
                      "`%s` is ambiguous: it begins %zu sandboxes (%s%s); give more of the id", arg,
                      n, names.data ? names.data : "", n > 5 ? ", ..." : "");
        cli_buf_free(&names);
        return -EINVAL;
    }
    cli_buf_free(&names);
    if (n == 1) {
        *ret_id = strdup(match);
        return *ret_id ? 0 : cli_error_errno(err, ENOMEM, "resolve");
    }
    /* No id begins so: maybe a name in the default app. */
    if (valid_name(arg, strlen(arg)) && by_name(c, "default", arg, ret_id, err) == 0)
        return 0;
    return cli_error_set(err, 404,
                         "no sandbox `%s` (not an id, an id prefix, or a running "
                         "sandbox's name)",
                         arg);
}

char *cli_sandbox_error_message(struct cli_client *c, const char *id)
{
    _cleanup_free_ char *path = cli_strdupf("/v1/sandboxes/%s/events", id);
    struct cli_buf body = {0};
    struct cli_error err = {0};
    char *msg = NULL, *line, *save = NULL;

    if (cli_call_raw(c, "GET", path, NULL, 0, &body, &err) < 0) {
        cli_error_free(&err);
        return NULL;
    }
    for (line = strtok_r(body.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        _cleanup_json_ json_t *ev = json_loads(line, 0, NULL);
        if (cli_str(ev, "message") && !strcmp(cli_str(ev, "event") ?: "", "error")) {
            free(msg);
            msg = strdup(cli_str(ev, "message"));
        }
    }
    cli_buf_free(&body);
    return msg;
}

int cli_exit_for_start_failure(const char *message)
{
    if (!message)
        return CLI_EXIT_RUN_FAILURE;
    if (strstr(message, "No such file or directory"))
        return CLI_EXIT_NOT_FOUND;
    if (strstr(message, "Permission denied") || strstr(message, "Exec format error"))
        return CLI_EXIT_CANNOT_RUN;
    return CLI_EXIT_RUN_FAILURE;
}
