/* wait.c — sbx wait: block until sandboxes finish, print their returncodes. */
#include "cli.h"

#include <getopt.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx wait [OPTIONS] SANDBOX...\n"
               "Waits until each sandbox has finished and prints its returncode (\"-\" when it\n"
               "has none: it failed to start).\n\n"
               "      --timeout S    give up after S seconds (exit 1) instead of waiting on\n"
               "      --json         print the final records instead\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Long polls of at most 50 s (the daemon's default is 55) until finished or
 * the deadline; returns the record. */
static int wait_one(struct cli_client *c, const char *id, double timeout, json_t **ret,
                    struct cli_error *err)
{
    double deadline = timeout > 0 ? now() + timeout : 0;

    for (;;) {
        double left = deadline ? deadline - now() : 50;
        _cleanup_free_ char *path = NULL;
        json_t *rec = NULL;
        int r;

        if (left < 0)
            left = 0;
        path = cli_strdupf("/v1/sandboxes/%s/wait?timeout_s=%.3f", id, left > 50 ? 50 : left);
        r = cli_call(c, "GET", path, NULL, &rec, err);
        if (r < 0)
            return r;
        if (!strcmp(cli_str(rec, "state") ?: "", "finished") || (deadline && left <= 0)) {
            *ret = rec;
            return 0;
        }
        json_decref(rec);
    }
}

int cmd_wait(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"timeout", required_argument, NULL, CLI_OPT_FIRST_LOCAL},
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    _cleanup_json_ json_t *records = json_array();
    bool as_json = false;
    double timeout = 0;
    struct cli_client *c;
    int ch, status = 0;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case CLI_OPT_FIRST_LOCAL: {
            char *end;
            timeout = strtod(optarg, &end);
            if (end == optarg || *end || !(timeout > 0) || timeout > 86400 * 365)
                return cli_usage_error("wait", CLI_EXIT_USAGE, "--timeout `%s`: seconds above 0",
                                       optarg);
            break;
        }
        case CLI_OPT_JSON:
            as_json = true;
            break;
        default:
            return cli_bad_option("wait", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("wait", CLI_EXIT_USAGE, "no SANDBOX given");
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    for (int a = optind; a < argc; a++) {
        _cleanup_free_ char *id = NULL;
        _cleanup_json_ json_t *rec = NULL;
        struct cli_error err = {0};
        json_t *rc;

        if (cli_resolve_sandbox(c, argv[a], &id, &err) < 0 ||
            wait_one(c, id, timeout, &rec, &err) < 0) {
            cli_error_print(&err);
            cli_error_free(&err);
            status = CLI_EXIT_FAILURE;
            continue;
        }
        if (strcmp(cli_str(rec, "state") ?: "", "finished")) {
            fprintf(stderr, "sbx: sandbox %s is still running after %g s\n", id, timeout);
            status = CLI_EXIT_FAILURE;
            continue;
        }
        if (as_json) {
            json_array_append(records, rec);
            continue;
        }
        rc = json_object_get(rec, "returncode");
        if (json_is_integer(rc))
            printf("%lld\n", (long long)json_integer_value(rc));
        else
            printf("-\n");
        fflush(stdout);
    }
    if (as_json && json_array_size(records))
        cli_print_json(argc - optind == 1 ? json_array_get(records, 0) : records);
    return status;
}
