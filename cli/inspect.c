/* inspect.c — sbx inspect: one sandbox in detail (its record, and the
 * processes exec'd in it). */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx inspect [OPTIONS] SANDBOX...\n"
               "Shows sandboxes in detail: state, times, returncode, resources, tags and the\n"
               "processes exec'd in them.\n\n"
               "      --json         the records as JSON (an object for one SANDBOX, an array\n"
               "                     for several)\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static void line(const char *key, const char *value)
{
    printf("%-12s %s\n", key, value && *value ? value : "-");
}

static void time_line(const char *key, json_t *rec, const char *field)
{
    json_t *v = json_object_get(rec, field);
    _cleanup_free_ char *when = NULL, *ago = NULL, *text = NULL;

    if (!json_is_number(v)) {
        line(key, "-");
        return;
    }
    when = cli_fmt_time(json_number_value(v));
    ago = cli_fmt_ago(json_number_value(v));
    text = cli_strdupf("%s (%s)", when, ago);
    line(key, text);
}

static void show(struct cli_client *c, json_t *rec)
{
    const char *id = cli_str(rec, "sandbox_id");
    _cleanup_free_ char *status = cli_fmt_status(rec), *tags = cli_fmt_tags(rec);
    _cleanup_free_ char *path = cli_strdupf("/v1/sandboxes/%s/processes", id ? id : "");
    _cleanup_json_ json_t *procs = NULL;
    struct cli_buf res = {0};
    struct cli_error err = {0};
    const char *k;
    json_t *v;
    size_t i;

    line("Sandbox:", id);
    line("App:", cli_str(rec, "app"));
    line("Name:", cli_str(rec, "name"));
    line("Image:", cli_str(rec, "image"));
    line("State:", cli_str(rec, "state"));
    line("Status:", status);
    time_line("Created:", rec, "created_at");
    time_line("Started:", rec, "started_at");
    time_line("Ready:", rec, "ready_at");
    time_line("Finished:", rec, "finished_at");
    v = json_object_get(rec, "returncode");
    if (json_is_integer(v)) {
        _cleanup_free_ char *rc = cli_strdupf("%lld", (long long)json_integer_value(v));
        line("Returncode:", rc);
    } else {
        line("Returncode:", "-");
    }
    line("Reason:", cli_str(rec, "finish_reason"));
    json_object_foreach(json_object_get(rec, "resources"), k, v)
    {
        _cleanup_free_ char *text = NULL;
        if (json_is_null(v))
            continue;
        text = json_is_integer(v) ? cli_strdupf("%s=%lld", k, (long long)json_integer_value(v))
                                  : cli_strdupf("%s=%g", k, json_number_value(v));
        cli_buf_append(&res, res.len ? ", " : "", res.len ? 2 : 0);
        cli_buf_append(&res, text, strlen(text));
    }
    line("Resources:", res.data);
    cli_buf_free(&res);
    line("Tags:", tags);
    {
        /* "8080 -> http://127.0.0.1:40123, ..." */
        struct cli_buf tun = {0};
        json_object_foreach(json_object_get(rec, "tunnels"), k, v)
        {
            _cleanup_free_ char *text = cli_strdupf("%s -> %s", k, cli_str(v, "url") ?: "?");
            cli_buf_append(&tun, tun.len ? ", " : "", tun.len ? 2 : 0);
            cli_buf_append(&tun, text, strlen(text));
        }
        line("Tunnels:", tun.data);
        cli_buf_free(&tun);
    }

    if (cli_call(c, "GET", path, NULL, &procs, &err) < 0) {
        line("Processes:", err.message);
        cli_error_free(&err);
        return;
    }
    if (!json_array_size(json_object_get(procs, "processes"))) {
        line("Processes:", "-");
        return;
    }
    printf("Processes:\n");
    {
        static const char *const headers[] = {"  PROCESS ID", "RETURNCODE", "STARTED", "COMMAND"};
        struct cli_table *t = cli_table_new(4, headers);
        json_array_foreach(json_object_get(procs, "processes"), i, v)
        {
            json_t *rc = json_object_get(v, "returncode"), *arg;
            _cleanup_free_ char *pid = cli_strdupf("  %s", cli_str(v, "process_id") ?: "?");
            _cleanup_free_ char *rcs = json_is_integer(rc)
                                           ? cli_strdupf("%lld", (long long)json_integer_value(rc))
                                           : cli_strdupf("running");
            _cleanup_free_ char *ago =
                cli_fmt_ago(json_number_value(json_object_get(v, "started_at")));
            struct cli_buf cmd = {0};
            size_t j;
            json_array_foreach(json_object_get(v, "argv"), j, arg)
            {
                const char *a = json_string_value(arg);
                cli_buf_append(&cmd, j ? " " : "", j ? 1 : 0);
                cli_buf_append(&cmd, a ? a : "", a ? strlen(a) : 0);
            }
            {
                const char *cells[] = {pid, rcs, ago, cmd.data};
                cli_table_add(t, cells);
            }
            cli_buf_free(&cmd);
        }
        cli_table_print(t, stdout);
        cli_table_free(t);
    }
}

int cmd_inspect(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    _cleanup_json_ json_t *records = json_array();
    bool as_json = false;
    struct cli_client *c;
    int ch, status = 0;
    size_t i;
    json_t *rec;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case CLI_OPT_JSON:
            as_json = true;
            break;
        default:
            return cli_bad_option("inspect", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("inspect", CLI_EXIT_USAGE, "no SANDBOX given");
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    for (int a = optind; a < argc; a++) {
        _cleanup_free_ char *id = NULL;
        struct cli_error err = {0};
        json_t *r = NULL;
        if (cli_resolve_sandbox(c, argv[a], &id, &err) < 0 ||
            cli_get_sandbox(c, id, &r, &err) < 0) {
            cli_error_print(&err);
            cli_error_free(&err);
            status = CLI_EXIT_FAILURE;
            continue;
        }
        json_array_append_new(records, r);
    }
    if (as_json) {
        if (json_array_size(records))
            cli_print_json(argc - optind == 1 ? json_array_get(records, 0) : records);
        return status;
    }
    json_array_foreach(records, i, rec)
    {
        if (i)
            printf("\n");
        show(c, rec);
    }
    return status;
}
