/* snapshot.c — sbx snapshot: a running sandbox's files, as they are now,
 * made a new image (its image's layers and a layer of what changed), like
 * `docker commit` and Modal's snapshot_filesystem(); the sandbox runs on. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx snapshot [OPTIONS] SANDBOX\n"
               "Makes a new image of the running sandbox's files as they are now (what its\n"
               "processes wrote or deleted, on top of its image) and prints the image's id,\n"
               "for sbx run --image.  The image keeps the environment, working directory,\n"
               "entrypoint and user of the sandbox's image.  The sandbox runs on, unchanged;\n"
               "what is in its memory and its volumes is not in the image.\n\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

int cmd_snapshot(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    _cleanup_free_ char *id = NULL, *path = NULL;
    _cleanup_json_ json_t *answer = NULL;
    struct cli_error err = {0};
    struct cli_client *c;
    int ch, r;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        default:
            return cli_bad_option("snapshot", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("snapshot", CLI_EXIT_USAGE, "give exactly one SANDBOX");
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    r = cli_resolve_sandbox(c, argv[optind], &id, &err);
    if (r >= 0) {
        path = cli_strdupf("/v1/sandboxes/%s/snapshot", id);
        r = cli_call(c, "POST", path, NULL, &answer, &err);
    }
    if (r >= 0 && !cli_str(answer, "image_id"))
        r = cli_error_set(&err, 0, "sandboxd's answer to the snapshot of %s has no image_id", id);
    if (r < 0) {
        cli_error_print(&err);
        cli_error_free(&err);
        return CLI_EXIT_FAILURE;
    }
    printf("%s\n", cli_str(answer, "image_id"));
    return 0;
}
