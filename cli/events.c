/* events.c — sbx events: a sandbox's lifecycle events (created, started,
 * finished, ...), the past ones first; -f follows until it has finished. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx events [OPTIONS] SANDBOX\n"
               "Prints the sandbox's lifecycle events, oldest first: the time, the event, and\n"
               "what came with it (returncode, reason, message).\n\n"
               "  -f, --follow       keep printing until the sandbox has finished\n"
               "      --json         the events as the daemon gives them (NDJSON)\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

struct printer {
    bool as_json;
    struct cli_buf line; /* an event not yet complete */
};

static int print_event(const char *text, size_t len, bool as_json)
{
    _cleanup_json_ json_t *ev = NULL;
    const char *k;
    json_t *v;

    if (as_json) {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : -errno;
    }
    ev = json_loadb(text, len, 0, NULL);
    if (!ev)
        return 0;
    {
        _cleanup_free_ char *when = cli_fmt_time(json_number_value(json_object_get(ev, "at")));
        /* The event names in a column when something follows them. */
        printf("%s  %-*s", when, json_object_size(ev) > 2 ? 10 : 0, cli_str(ev, "event") ?: "?");
    }
    json_object_foreach(ev, k, v)
    {
        _cleanup_free_ char *s = NULL;
        if (!strcmp(k, "event") || !strcmp(k, "at"))
            continue;
        s = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY);
        printf("  %s=%s", k, s ? s : "?");
    }
    printf("\n");
    return fflush(stdout) == 0 ? 0 : -errno;
}

static int on_data(const char *data, size_t len, void *userdata)
{
    struct printer *p = userdata;

    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        if (cli_buf_append(&p->line, data, n) < 0)
            return -ENOMEM;
        if (!nl)
            break;
        if (p->line.len) {
            int r = print_event(p->line.data, p->line.len, p->as_json);
            if (r < 0)
                return r;
        }
        p->line.len = 0;
        data = nl + 1;
        len -= n + 1;
    }
    return 0;
}

int cmd_events(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"follow", no_argument, NULL, 'f'},
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    _cleanup_free_ char *id = NULL, *path = NULL;
    struct printer p = {0};
    bool follow = false;
    struct cli_error err = {0};
    struct cli_client *c;
    int ch, r;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "hf", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case 'f':
            follow = true;
            break;
        case CLI_OPT_JSON:
            p.as_json = true;
            break;
        default:
            return cli_bad_option("events", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("events", CLI_EXIT_USAGE, "give exactly one SANDBOX");
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    r = cli_resolve_sandbox(c, argv[optind], &id, &err);
    if (r >= 0) {
        path = cli_strdupf("/v1/sandboxes/%s/events%s", id, follow ? "?follow=1" : "");
        r = cli_call_stream(c, path, on_data, &p, &err);
        if (r >= 0 && p.line.len)
            r = print_event(p.line.data, p.line.len, p.as_json);
    }
    cli_buf_free(&p.line);
    if (r == -EPIPE)
        return 141;
    if (r < 0) {
        if (!err.message)
            cli_error_errno(&err, -r, "write stdout");
        cli_error_print(&err);
        cli_error_free(&err);
        return CLI_EXIT_FAILURE;
    }
    return 0;
}
