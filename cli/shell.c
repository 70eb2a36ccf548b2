/* shell.c — sbx shell: an interactive shell in a running sandbox (bash where
 * the image has it, else sh), on a pty, like `docker exec -it ID sh`. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx shell [OPTIONS] SANDBOX\n"
               "An interactive shell in a running sandbox, on a terminal: bash where the\n"
               "image has it, else sh.  sbx exits with the shell's returncode.\n\n"
               "  -e, --env K=V        set a variable (K alone: its value here); repeatable\n"
               "      --secret NAME    the variables of the secret NAME (see sbx secret);\n"
               "                       repeatable\n"
               "  -w, --workdir DIR    working directory (default /)\n"
               "      --host HOST      the daemon (see sbx --help)\n"
               "  -h, --help           this help\n");
}

int cmd_shell(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"env", required_argument, NULL, 'e'},
        {"workdir", required_argument, NULL, 'w'},
        {"secret", required_argument, NULL, CLI_OPT_FIRST_LOCAL},
        {NULL, 0, NULL, 0},
    };
    _cleanup_json_ json_t *env = json_object(), *secrets = json_array();
    _cleanup_json_ json_t *args =
        json_pack("[s,s,s]", "/bin/sh", "-c",
                  "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh");
    _cleanup_free_ char *id = NULL;
    struct cli_exec_opts o = {.interactive = true, .tty = true};
    struct cli_error err = {0};
    struct cli_client *c;
    int ch;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+he:w:", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case 'e':
            if (!cli_parse_kv("shell", "--env", optarg, true, env))
                return CLI_EXIT_RUN_FAILURE;
            break;
        case 'w':
            o.workdir = optarg;
            break;
        case CLI_OPT_FIRST_LOCAL:
            if (json_array_append_new(secrets, json_string(optarg)) < 0)
                return cli_usage_error("shell", CLI_EXIT_RUN_FAILURE,
                                       "--secret `%s`: not valid UTF-8", optarg);
            break;
        default:
            return cli_bad_option("shell", argv, CLI_EXIT_RUN_FAILURE);
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("shell", CLI_EXIT_RUN_FAILURE, "give exactly one SANDBOX");
    if (!isatty(STDIN_FILENO))
        return cli_usage_error("shell", CLI_EXIT_RUN_FAILURE,
                               "stdin is not a terminal (for pipes: sbx exec -i SANDBOX -- sh)");
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_RUN_FAILURE;
    if (cli_resolve_sandbox(c, argv[optind], &id, &err) < 0) {
        cli_error_print(&err);
        cli_error_free(&err);
        return CLI_EXIT_RUN_FAILURE;
    }
    o.argv = args;
    o.env = env;
    o.secrets = secrets;
    return cli_exec_attached(c, id, &o);
}
