/* logs.c — sbx logs: what a sandbox's entrypoint (or an exec'd process)
 * wrote, stdout here to stdout and stderr to stderr; -f follows it live. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx logs [OPTIONS] SANDBOX [PROCESS]\n"
               "Prints the output of the sandbox's entrypoint, or of PROCESS (a process id, or\n"
               "a unique prefix of one; see sbx inspect), as far as the daemon keeps it.\n\n"
               "  -f, --follow       keep printing until the process ends\n"
               "      --stdout       stdout only\n"
               "      --stderr       stderr only\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

/* A process id from a full id or a unique prefix of one. */
static int resolve_process(struct cli_client *c, const char *sandbox_id, const char *arg,
                           char **ret, struct cli_error *err)
{
    _cleanup_free_ char *path = cli_strdupf("/v1/sandboxes/%s/processes", sandbox_id);
    _cleanup_free_ char *full = strncmp(arg, "pr-", 3) ? cli_strdupf("pr-%s", arg) : NULL;
    _cleanup_json_ json_t *answer = NULL;
    const char *match = NULL;
    size_t i, n = 0;
    json_t *p;
    int r = cli_call(c, "GET", path, NULL, &answer, err);

    if (r < 0)
        return r;
    json_array_foreach(json_object_get(answer, "processes"), i, p)
    {
        const char *id = cli_str(p, "process_id");
        if (!id)
            continue;
        if (!strcmp(id, arg) || (full && !strcmp(id, full))) {
            match = id, n = 1;
            break;
        }
        if (!strncmp(id, arg, strlen(arg)) || (full && !strncmp(id, full, strlen(full))))
            match = id, n++;
    }
    if (n > 1)
        return cli_error_set(err, 0, "`%s` is ambiguous: it begins %zu processes of %s", arg, n,
                             sandbox_id);
    if (n == 0)
        return cli_error_set(err, 404, "no process `%s` in sandbox %s", arg, sandbox_id);
    *ret = strdup(match);
    return *ret ? 0 : cli_error_errno(err, ENOMEM, "process id");
}

int cmd_logs(struct cli *cli, int argc, char **argv)
{
    enum { OPT_STDOUT = CLI_OPT_FIRST_LOCAL, OPT_STDERR };
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"follow", no_argument, NULL, 'f'},
        {"stdout", no_argument, NULL, OPT_STDOUT},
        {"stderr", no_argument, NULL, OPT_STDERR},
        {NULL, 0, NULL, 0},
    };
    _cleanup_free_ char *id = NULL, *pid = NULL;
    struct cli_attach a = {.on_signal = CLI_SIGNAL_DETACH};
    struct cli_attach_result res = {0};
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
            a.follow = true;
            break;
        case OPT_STDOUT:
            a.want_stdout = true;
            break;
        case OPT_STDERR:
            a.want_stderr = true;
            break;
        default:
            return cli_bad_option("logs", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind >= argc || argc - optind > 2)
        return cli_usage_error("logs", CLI_EXIT_USAGE, "give a SANDBOX and at most one PROCESS");
    if (!a.want_stdout && !a.want_stderr)
        a.want_stdout = a.want_stderr = true;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    r = cli_resolve_sandbox(c, argv[optind], &id, &err);
    if (r >= 0 && optind + 1 < argc)
        r = resolve_process(c, id, argv[optind + 1], &pid, &err);
    if (r >= 0) {
        a.sandbox_id = id;
        a.process_id = pid;
        r = cli_attach(c, &a, &res, &err);
        json_decref(res.record);
    }
    if (r < 0) {
        if (!pid && err.message && strstr(err.message, "no entrypoint"))
            cli_error_set(&err, 409,
                          "sandbox %s has no entrypoint: name a process (sbx logs %s PROCESS; "
                          "sbx inspect lists them)",
                          id, argv[optind]);
        cli_error_print(&err);
        cli_error_free(&err);
        return CLI_EXIT_FAILURE;
    }
    if (res.output_closed)
        return 128 + SIGPIPE;
    return res.signal ? 128 + res.signal : 0;
}
