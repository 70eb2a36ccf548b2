/* stats.c — sbx stats: cpu time, memory, pids and OOM kills of running
 * sandboxes, as the daemon measures them now. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx stats [OPTIONS] [SANDBOX...]\n"
               "Shows cpu time, memory (now and peak), tasks and OOM kills of the given running\n"
               "sandboxes, or of every running one.\n\n"
               "      --json         a JSON array of {\"sandbox_id\", ...the daemon's stats}\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static json_int_t num(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

int cmd_stats(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    static const char *const headers[] = {"SANDBOX ID", "CPU TIME", "MEMORY",
                                          "PEAK",       "PIDS",     "OOM KILLS"};
    _cleanup_json_ json_t *ids = json_array(), *out = json_array();
    bool as_json = false;
    struct cli_error err = {0};
    struct cli_client *c;
    int ch, status = 0;
    size_t i;
    json_t *v;

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
            return cli_bad_option("stats", argv, CLI_EXIT_USAGE);
        }
    }
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (optind == argc) {
        _cleanup_json_ json_t *list = NULL;
        if (cli_call(c, "GET", "/v1/sandboxes?state=running", NULL, &list, &err) < 0) {
            cli_error_print(&err);
            cli_error_free(&err);
            return CLI_EXIT_FAILURE;
        }
        json_array_foreach(json_object_get(list, "sandboxes"), i, v)
            json_array_append_new(ids, json_string(cli_str(v, "sandbox_id")));
    }
    for (int a = optind; a < argc; a++) {
        _cleanup_free_ char *id = NULL;
        if (cli_resolve_sandbox(c, argv[a], &id, &err) < 0) {
            cli_error_print(&err);
            cli_error_free(&err);
            status = CLI_EXIT_FAILURE;
            continue;
        }
        json_array_append_new(ids, json_string(id));
    }
    json_array_foreach(ids, i, v)
    {
        _cleanup_free_ char *path = cli_strdupf("/v1/sandboxes/%s/stats", json_string_value(v));
        json_t *st = NULL;
        if (cli_call(c, "GET", path, NULL, &st, &err) < 0) {
            /* Listed as running, finished since: not an error of ours. */
            if (optind < argc || err.status != 409) {
                cli_error_print(&err);
                status = CLI_EXIT_FAILURE;
            }
            cli_error_free(&err);
            continue;
        }
        if (!json_is_object(st)) {
            json_decref(st);
            continue;
        }
        json_object_set(st, "sandbox_id", v);
        json_array_append_new(out, st);
    }
    if (as_json) {
        cli_print_json(out);
        return status;
    }
    {
        struct cli_table *t = cli_table_new(6, headers);
        json_array_foreach(out, i, v)
        {
            _cleanup_free_ char *cpu = cli_fmt_duration((double)num(v, "cpu_usage_ns") / 1e9);
            _cleanup_free_ char *mem = cli_fmt_bytes((uint64_t)num(v, "memory_current"));
            _cleanup_free_ char *peak = cli_fmt_bytes((uint64_t)num(v, "memory_peak"));
            _cleanup_free_ char *pids = cli_strdupf("%lld", (long long)num(v, "pids_current"));
            _cleanup_free_ char *ooms = cli_strdupf("%lld", (long long)num(v, "oom_kills"));
            const char *cells[] = {cli_str(v, "sandbox_id"), cpu, mem, peak, pids, ooms};
            cli_table_add(t, cells);
        }
        cli_table_print(t, stdout);
        cli_table_free(t);
    }
    return status;
}
