/* tunnels.c — sbx tunnels: the host ports a sandbox's ports are served on,
 * waiting for them as GET /v1/sandboxes/ID/tunnels does. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx tunnels [OPTIONS] SANDBOX\n"
               "Shows the host address and port each of the sandbox's ports (\"ports\" at\n"
               "create) is served on, waiting until the sandbox has them.\n\n"
               "      --timeout SECONDS  how long to wait (default 50)\n"
               "      --json             the daemon's map {\"PORT\": {host, port, url, tls}}\n"
               "      --host HOST        the daemon (see sbx --help)\n"
               "  -h, --help             this help\n");
}

int cmd_tunnels(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {"timeout", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    static const char *const headers[] = {"PORT", "HOST", "HOST PORT", "URL"};
    _cleanup_json_ json_t *map = NULL;
    _cleanup_free_ char *id = NULL, *path = NULL;
    struct cli_error err = {0};
    const char *timeout = "50", *k;
    struct cli_client *c;
    bool as_json = false;
    json_t *v;
    int ch;

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
        case 't': {
            char *end;
            double t = strtod(optarg, &end);
            if (end == optarg || *end || t < 0 || t > 86400) {
                fprintf(stderr, "sbx tunnels: --timeout wants seconds from 0 to 86400\n");
                return CLI_EXIT_USAGE;
            }
            timeout = optarg;
            break;
        }
        default:
            return cli_bad_option("tunnels", argv, CLI_EXIT_USAGE);
        }
    }
    if (argc - optind != 1) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (cli_resolve_sandbox(c, argv[optind], &id, &err) < 0 ||
        !(path = cli_strdupf("/v1/sandboxes/%s/tunnels?timeout_s=%s", id, timeout)) ||
        cli_call(c, "GET", path, NULL, &map, &err) < 0) {
        cli_error_print(&err);
        cli_error_free(&err);
        return CLI_EXIT_FAILURE;
    }
    if (as_json) {
        cli_print_json(map);
        return 0;
    }
    {
        struct cli_table *t = cli_table_new(4, headers);
        json_object_foreach(map, k, v)
        {
            _cleanup_free_ char *port =
                cli_strdupf("%lld", (long long)json_integer_value(json_object_get(v, "port")));
            const char *cells[] = {k, cli_str(v, "host"), port, cli_str(v, "url")};
            cli_table_add(t, cells);
        }
        cli_table_print(t, stdout);
        cli_table_free(t);
    }
    return 0;
}
