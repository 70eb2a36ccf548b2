/* terminate.c — sbx terminate: SIGKILL to everything in sandboxes; each
 * one's id is printed once it has finished. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx terminate [OPTIONS] SANDBOX...\n"
               "Kills everything in each sandbox (its returncode becomes 137) and prints its id\n"
               "once it has finished.  A finished sandbox is left as it is.\n\n"
               "      --json         print the final records instead\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

int cmd_terminate(struct cli *cli, int argc, char **argv)
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
            return cli_bad_option("terminate", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("terminate", CLI_EXIT_USAGE, "no SANDBOX given");
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    for (int a = optind; a < argc; a++) {
        _cleanup_free_ char *id = NULL, *path = NULL;
        _cleanup_json_ json_t *body = json_pack("{s:b}", "wait", 1), *rec = NULL;
        struct cli_error err = {0};

        if (cli_resolve_sandbox(c, argv[a], &id, &err) < 0) {
            cli_error_print(&err);
            cli_error_free(&err);
            status = CLI_EXIT_FAILURE;
            continue;
        }
        path = cli_strdupf("/v1/sandboxes/%s/terminate", id);
        if (cli_call(c, "POST", path, body, &rec, &err) < 0) {
            cli_error_print(&err);
            cli_error_free(&err);
            status = CLI_EXIT_FAILURE;
            continue;
        }
        if (as_json)
            json_array_append(records, rec);
        else
            printf("%s\n", id);
        fflush(stdout);
    }
    if (as_json && json_array_size(records))
        cli_print_json(argc - optind == 1 ? json_array_get(records, 0) : records);
    return status;
}
