/* rm.c — sbx rm: forget sandboxes (their records and output go).  Like
 * `docker rm`, a running one needs -f, which terminates it first. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx rm [OPTIONS] SANDBOX...\n"
               "Forgets finished sandboxes (their records and output go) and prints their ids.\n\n"
               "  -f, --force        running ones too: terminated first\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

int cmd_rm(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"force", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    bool force = false;
    struct cli_client *c;
    int ch, status = 0;

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
            force = true;
            break;
        default:
            return cli_bad_option("rm", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("rm", CLI_EXIT_USAGE, "no SANDBOX given");
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    for (int a = optind; a < argc; a++) {
        _cleanup_free_ char *id = NULL, *path = NULL;
        _cleanup_json_ json_t *rec = NULL;
        struct cli_error err = {0};
        int r = cli_resolve_sandbox(c, argv[a], &id, &err);

        if (r >= 0 && !force) {
            r = cli_get_sandbox(c, id, &rec, &err);
            if (r >= 0 && strcmp(cli_str(rec, "state") ?: "", "finished"))
                r = cli_error_set(&err, 0, "sandbox %s is running: terminate it first, or use -f",
                                  id);
        }
        if (r >= 0) {
            path = cli_strdupf("/v1/sandboxes/%s", id);
            r = cli_call(c, "DELETE", path, NULL, NULL, &err);
        }
        if (r < 0) {
            cli_error_print(&err);
            cli_error_free(&err);
            status = CLI_EXIT_FAILURE;
            continue;
        }
        printf("%s\n", id);
        fflush(stdout);
    }
    return status;
}
