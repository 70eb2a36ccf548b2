/* exec.c — sbx exec: a command in a running sandbox, attached to this
 * terminal or these pipes, ending with its returncode. */
#include "cli.h"

#include <getopt.h>
#include <signal.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx exec [OPTIONS] SANDBOX [--] CMD [ARG...]\n"
               "Runs CMD in a running sandbox: its stdout and stderr come here, and sbx exits\n"
               "with its returncode (128+N when killed by signal N).\n\n"
               "  -i, --interactive    forward stdin (without it, the process's stdin is empty)\n"
               "  -t, --tty            a terminal: raw mode here, window size forwarded, stdout\n"
               "                       and stderr merged (as on any terminal)\n"
               "  -e, --env K=V        set a variable (K alone: its value here); repeatable\n"
               "      --secret NAME    the variables of the secret NAME (see sbx secret);\n"
               "                       repeatable; --env overrides them\n"
               "  -w, --workdir DIR    working directory (default /)\n"
               "      --timeout S      kill it (returncode 137) after S seconds\n"
               "      --host HOST      the daemon (see sbx --help)\n"
               "  -h, --help           this help\n\n"
               "SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the process; a second one\n"
               "detaches.  With -t every key (^C too) goes to the process.\n"
               "sbx's own failures exit 125; a CMD that is not there 127, not executable 126.\n");
}

/* The exit status for an attach that ended without a returncode. */
static int exit_without_returncode(const struct cli_attach_result *res)
{
    if (res->output_closed)
        return 128 + SIGPIPE;
    if (res->signal)
        return 128 + res->signal;
    return CLI_EXIT_RUN_FAILURE;
}

int cli_exec_attached(struct cli_client *c, const char *sandbox_id, const struct cli_exec_opts *o)
{
    _cleanup_free_ char *path = cli_strdupf("/v1/sandboxes/%s/exec", sandbox_id);
    _cleanup_json_ json_t *body = json_pack("{s:O}", "argv", o->argv), *answer = NULL;
    _cleanup_json_ json_t *env = o->env ? json_deep_copy(o->env) : json_object();
    struct cli_attach_result res = {0};
    struct cli_error err = {0};
    const char *pid;
    int r;

    if (!body || !env) {
        fputs("sbx: out of memory\n", stderr);
        return CLI_EXIT_RUN_FAILURE;
    }
    if (o->tty) {
        unsigned rows = 24, cols = 80;
        const char *term = getenv("TERM");
        (void)cli_term_size(&rows, &cols);
        json_object_set_new(body, "pty", json_pack("{s:i,s:i}", "rows", rows, "cols", cols));
        if (!json_object_get(env, "TERM"))
            json_object_set_new(env, "TERM", json_string(term && *term ? term : "xterm"));
    }
    if (json_object_size(env))
        json_object_set(body, "env", env);
    if (json_array_size(o->secrets))
        json_object_set(body, "secrets", o->secrets);
    if (o->workdir && !cli_set_string("exec", body, "workdir", o->workdir))
        return CLI_EXIT_RUN_FAILURE;
    if (o->timeout_s)
        json_object_set_new(body, "timeout_s", json_integer(o->timeout_s));
    r = cli_call(c, "POST", path, body, &answer, &err);
    if (r < 0) {
        int status =
            err.status == 400 ? cli_exit_for_start_failure(err.message) : CLI_EXIT_RUN_FAILURE;
        cli_error_print(&err);
        cli_error_free(&err);
        return status;
    }
    pid = cli_str(answer, "process_id");
    if (!pid) {
        fprintf(stderr, "sbx: sandboxd's answer to exec has no process_id\n");
        return CLI_EXIT_RUN_FAILURE;
    }
    r = cli_attach(c,
                   &(struct cli_attach){
                       .sandbox_id = sandbox_id,
                       .process_id = pid,
                       .want_stdout = true,
                       .want_stderr = !o->tty, /* a pty has one stream */
                       .follow = true,
                       .forward_stdin = o->interactive,
                       .close_stdin = !o->interactive && !o->tty,
                       .tty = o->tty,
                       .want_returncode = true,
                       .on_signal = CLI_SIGNAL_FORWARD,
                   },
                   &res, &err);
    json_decref(res.record);
    if (r < 0) {
        cli_error_print(&err);
        cli_error_free(&err);
        return CLI_EXIT_RUN_FAILURE;
    }
    if (!res.has_returncode)
        return exit_without_returncode(&res);
    return res.returncode >= 0 && res.returncode <= 255 ? res.returncode : CLI_EXIT_RUN_FAILURE;
}

int cmd_exec(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"interactive", no_argument, NULL, 'i'},
        {"tty", no_argument, NULL, 't'},
        {"env", required_argument, NULL, 'e'},
        {"workdir", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, CLI_OPT_FIRST_LOCAL},
        {"secret", required_argument, NULL, CLI_OPT_FIRST_LOCAL + 1},
        {NULL, 0, NULL, 0},
    };
    _cleanup_json_ json_t *env = json_object(), *args = json_array(), *secrets = json_array();
    _cleanup_free_ char *id = NULL;
    struct cli_exec_opts o = {0};
    struct cli_error err = {0};
    struct cli_client *c;
    int ch, first;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+hite:w:", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case 'i':
            o.interactive = true;
            break;
        case 't':
            o.tty = true;
            break;
        case 'e':
            if (!cli_parse_kv("exec", "--env", optarg, true, env))
                return CLI_EXIT_RUN_FAILURE;
            break;
        case 'w':
            o.workdir = optarg;
            break;
        case CLI_OPT_FIRST_LOCAL: {
            char *end;
            o.timeout_s = strtol(optarg, &end, 10);
            if (*end || o.timeout_s < 1 || o.timeout_s > 86400)
                return cli_usage_error("exec", CLI_EXIT_RUN_FAILURE,
                                       "--timeout `%s`: seconds from 1 to 86400", optarg);
            break;
        }
        case CLI_OPT_FIRST_LOCAL + 1:
            if (json_array_append_new(secrets, json_string(optarg)) < 0)
                return cli_usage_error("exec", CLI_EXIT_RUN_FAILURE,
                                       "--secret `%s`: not valid UTF-8", optarg);
            break;
        default:
            return cli_bad_option("exec", argv, CLI_EXIT_RUN_FAILURE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("exec", CLI_EXIT_RUN_FAILURE, "no SANDBOX given");
    first = optind + 1;
    if (first < argc && !strcmp(argv[first], "--"))
        first++;
    for (int i = first; i < argc; i++)
        if (json_array_append_new(args, json_string(argv[i])) < 0)
            return cli_usage_error("exec", CLI_EXIT_RUN_FAILURE, "CMD `%s`: not valid UTF-8",
                                   argv[i]);
    if (json_array_size(args) == 0)
        return cli_usage_error("exec", CLI_EXIT_RUN_FAILURE, "no CMD given");
    if (o.tty && o.interactive && !isatty(STDIN_FILENO))
        return cli_usage_error("exec", CLI_EXIT_RUN_FAILURE,
                               "-it needs a terminal on stdin (use -i alone for pipes)");
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
