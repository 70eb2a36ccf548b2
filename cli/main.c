/* main.c — sbx: global options, the command table, and what every command
 * shares for its arguments. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <strings.h>

int cli_exit_signal;

static const struct command {
    const char *name;
    int (*run)(struct cli *cli, int argc, char **argv);
    const char *summary;
} commands[] = {
    {"run", cmd_run, "create a sandbox and run a command in it"},
    {"exec", cmd_exec, "run a command in a running sandbox"},
    {"shell", cmd_shell, "an interactive shell in a running sandbox"},
    {"ps", cmd_ps, "list sandboxes"},
    {"inspect", cmd_inspect, "show a sandbox in detail"},
    {"logs", cmd_logs, "print a sandbox's (or a process's) output"},
    {"wait", cmd_wait, "wait for sandboxes to finish; print their returncodes"},
    {"terminate", cmd_terminate, "kill everything in sandboxes"},
    {"rm", cmd_rm, "terminate and forget sandboxes"},
    {"cp", cmd_cp, "copy files and directories between the host and a sandbox"},
    {"events", cmd_events, "a sandbox's lifecycle events"},
    {"stats", cmd_stats, "cpu, memory and pids of running sandboxes"},
    {"tunnels", cmd_tunnels, "the host ports a sandbox's ports are served on"},
    {"tag", cmd_tag, "show, set or remove a sandbox's tags"},
    {"info", cmd_info, "the daemon: version, cgroup mode, limits, counts"},
    {"volume", cmd_volume, "volumes: persistent directories sandboxes mount"},
    {"secret", cmd_secret, "secrets: named sets of variables for sandboxes"},
    {"image", cmd_image, "images: build, list, follow, delete, export and import"},
    {"snapshot", cmd_snapshot, "a running sandbox's files as a new image"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx [--host HOST] COMMAND [OPTIONS] [ARGS]\n"
               "The sandboxd admin CLI: a client of sandboxd's REST API (see sbx(1)).\n\n"
               "Commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nSANDBOX is a sandbox id, a unique prefix of one, or APP/NAME; IMAGE an image\n"
               "id, a unique prefix of one, or a name.\n\n"
               "Global options:\n"
               "  --host HOST     the daemon: a unix socket path, unix:PATH or tcp://HOST:PORT\n"
               "                  (default $SANDBOXD_HOST, else " CLI_DEFAULT_HOST ")\n"
               "  -h, --help      this help; `sbx COMMAND --help` for a command's\n"
               "  --version       sbx's version\n\n"
               "Environment: SANDBOXD_HOST, SANDBOXD_TOKEN (a bearer token, for TCP).\n");
}

struct cli_client *cli_client(struct cli *cli)
{
    struct cli_error err = {0};

    if (cli->client)
        return cli->client;
    if (cli_client_new(cli->host, cli->token, &cli->client, &err) < 0) {
        cli_error_print(&err);
        cli_error_free(&err);
        return NULL;
    }
    return cli->client;
}

int cli_usage_error(const char *cmd, int exit_status, const char *fmt, ...)
{
    va_list ap;
    _cleanup_free_ char *msg = NULL;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    /* Arguments may hold anything: the message stays one line. */
    for (char *p = msg; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    fprintf(stderr, "sbx %s: %s (see sbx %s --help)\n", cmd, msg ? msg : "out of memory", cmd);
    return exit_status;
}

int cli_bad_option(const char *cmd, char *const *argv, int exit_status)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";

    if (optopt == 0)
        return cli_usage_error(cmd, exit_status, "unknown option `%s`", arg);
    if (optopt < 0x100)
        return cli_usage_error(cmd, exit_status, "option -%c is unknown or needs a value", optopt);
    return cli_usage_error(cmd, exit_status, "option `%s` needs a value", arg);
}

static void subcommand_usage(FILE *f, const char *cmd, const char *about,
                             const struct cli_subcommand *subs, size_t n)
{
    fprintf(f, "usage: sbx %s [--host HOST] COMMAND [OPTIONS] [ARGS]\n%s\n\nCommands:\n", cmd,
            about);
    for (size_t i = 0; i < n; i++) {
        int w = (int)(strlen(subs[i].name) + strlen(subs[i].args) + 1);
        fprintf(f, "  %s %s%*s %s\n", subs[i].name, subs[i].args, w < 32 ? 32 - w : 0, "",
                subs[i].summary);
    }
    fprintf(f,
            "\n      --host HOST    the daemon (see sbx --help)\n"
            "  -h, --help         this help; `sbx %s COMMAND --help` for a command's\n",
            cmd);
}

int cli_run_subcommand(struct cli *cli, const char *cmd, const char *about,
                       const struct cli_subcommand *subs, size_t n, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int ch, first;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            subcommand_usage(stdout, cmd, about, subs, n);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        default:
            return cli_bad_option(cmd, argv, CLI_EXIT_USAGE);
        }
    }
    if (optind >= argc) {
        subcommand_usage(stderr, cmd, about, subs, n);
        return CLI_EXIT_USAGE;
    }
    first = optind;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(subs[i].name, argv[first]))
            continue;
        /* The subcommand parses its own argv (argv[0] its name) from scratch. */
        optind = 0;
        return subs[i].run(cli, argc - first, argv + first);
    }
    return cli_usage_error(cmd, CLI_EXIT_USAGE, "no command `%s`", argv[first]);
}

bool cli_parse_mib(const char *s, long long *ret)
{
    char *end;
    long long v;

    if (*s < '0' || *s > '9')
        return false;
    v = strtoll(s, &end, 10);
    if (!*end || !strcasecmp(end, "m") || !strcasecmp(end, "mb") || !strcasecmp(end, "mib"))
        *ret = v;
    else if (!strcasecmp(end, "g") || !strcasecmp(end, "gb") || !strcasecmp(end, "gib"))
        *ret = v * 1024;
    else
        return false;
    return v >= 0 && v < (1LL << 40);
}

bool cli_set_string(const char *cmd, json_t *obj, const char *key, const char *value)
{
    if (json_object_set_new(obj, key, json_string(value)) < 0) {
        cli_usage_error(cmd, CLI_EXIT_USAGE, "%s `%s`: not valid UTF-8", key, value);
        return false;
    }
    return true;
}

bool cli_parse_kv(const char *cmd, const char *what, const char *arg, bool from_env, json_t *obj)
{
    const char *eq = strchr(arg, '=');
    _cleanup_free_ char *key = NULL;

    if (eq == arg || (!eq && !from_env)) {
        cli_usage_error(cmd, CLI_EXIT_USAGE, "%s `%s`: expected KEY=VALUE", what, arg);
        return false;
    }
    key = eq ? strndup(arg, (size_t)(eq - arg)) : strdup(arg);
    if (!key)
        return false;
    if (!eq) {
        /* Docker's `-e NAME`: this environment's value, or nothing. */
        const char *v = getenv(key);
        if (v)
            json_object_set_new(obj, key, json_string(v));
        return true;
    }
    if (json_object_set_new(obj, key, json_string(eq + 1)) < 0) {
        cli_usage_error(cmd, CLI_EXIT_USAGE, "%s `%s`: not valid UTF-8", what, arg);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"host", required_argument, NULL, 'H'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct cli cli = {.host = getenv("SANDBOXD_HOST"), .token = getenv("SANDBOXD_TOKEN")};
    const char *name;
    int c, r;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        case 'H':
            cli.host = optarg;
            break;
        case 'V':
            printf("sbx %s\n", PACKAGE_VERSION);
            return 0;
        default:
            fputs("sbx: option `", stderr);
            for (const char *p = argv[optind - 1]; *p; p++)
                fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, stderr);
            fputs("` is unknown or needs a value (see sbx --help)\n", stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    name = argv[optind];
    if (!strcmp(name, "help")) {
        if (optind + 1 < argc) {
            /* `sbx help CMD` is `sbx CMD --help`. */
            char *help_argv[] = {argv[optind + 1], (char *)"--help", NULL};
            for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (!strcmp(commands[i].name, argv[optind + 1])) {
                    optind = 0;
                    return commands[i].run(&cli, 2, help_argv);
                }
        }
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "version")) {
        printf("sbx %s\n", PACKAGE_VERSION);
        return 0;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    r = -1;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        int first = optind;
        if (strcmp(commands[i].name, name))
            continue;
        /* The command parses its own argv (argv[0] its name) from scratch. */
        optind = 0;
        r = commands[i].run(&cli, argc - first, argv + first);
        break;
    }
    if (r < 0) {
        fputs("sbx: no command `", stderr);
        for (const char *p = name; *p; p++)
            fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, stderr);
        fputs("` (see sbx --help)\n", stderr);
        r = CLI_EXIT_USAGE;
    }
    if ((fflush(stdout) != 0 || ferror(stdout)) && errno != EPIPE && r == 0) {
        fprintf(stderr, "sbx: write stdout: %s\n", strerror(errno));
        r = CLI_EXIT_FAILURE;
    }
    cli_client_free(cli.client);
    curl_global_cleanup();
    if (cli_exit_signal) {
        /* Ended by a signal: say so to the caller the way it expects. */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigemptyset(&dfl.sa_mask);
        sigaction(cli_exit_signal, &dfl, NULL);
        raise(cli_exit_signal);
    }
    return r;
}
