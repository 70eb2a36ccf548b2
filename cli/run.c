/* run.c — sbx run: create a sandbox and, like `docker run`, stay attached to
 * it and exit with its returncode (or, with -d, print its id).
 *
 * The API gives a terminal only to exec'd processes (an entrypoint has
 * pipes), so `run -t` creates an idle sandbox, execs CMD in it with a pty,
 * and terminates the sandbox when CMD ends: to the user it is the same. */
#include "cli.h"

#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <strings.h>

/* What a shell is, in any image: bash where there is one. */
static const char *const shell_argv[] = {
    "/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh", NULL};

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx run [OPTIONS] [--] [CMD [ARG...]]\n"
               "Creates a sandbox running CMD (or the image's entrypoint), streams its stdout and\n"
               "stderr here and exits with its returncode: 137 after terminate, timeout or OOM,\n"
               "128+N when killed by signal N.  With -d it prints the sandbox's id instead.\n\n"
               "      --image IMAGE      image id or alias (default: the daemon's, debian-slim)\n"
               "      --name NAME        unique among the app's running sandboxes\n"
               "      --app APP          the app it belongs to (default \"default\")\n"
               "      --tag K=V          a tag; repeatable\n"
               "  -e, --env K=V          a variable (K alone: its value here); repeatable\n"
               "      --secret NAME      the variables of the secret NAME (see sbx secret);\n"
               "                         repeatable; --env overrides them\n"
               "  -v, --volume NAME:DIR  mount the volume NAME (see sbx volume) read-write at\n"
               "                         DIR; repeatable\n"
               "      --mount SRC:DST[:ro|rw]\n"
               "                         bind SRC, a path on the daemon's host under one its\n"
               "                         config allows (host_mounts), at DST; read-only unless\n"
               "                         :rw (and the config allows it); repeatable\n"
               "      --memory MIB       memory limit in MiB (or with a unit: 512m, 2g)\n"
               "      --cpu CORES        cpu weight in cores (e.g. 0.5)\n"
               "      --cpu-limit CORES  hard cpu cap in cores\n"
               "      --pids N           max tasks\n"
               "      --timeout S        max lifetime (seconds, or 90s, 10m, 2h; default 300)\n"
               "      --idle-timeout S   end it after S idle seconds\n"
               "  -w, --workdir DIR      working directory\n"
               "      --hostname NAME    hostname (default: the sandbox id)\n"
               "  -d, --detach           print the id and leave it running (no CMD: an idle\n"
               "                         sandbox, for exec, until terminated or timed out)\n"
               "      --rm               forget the sandbox once it has finished\n"
               "  -i, --interactive      forward stdin (without it, CMD's stdin is empty)\n"
               "  -t, --tty              a terminal (CMD defaults to the image's shell)\n"
               "      --host HOST        the daemon (see sbx --help)\n"
               "  -h, --help             this help\n\n"
               "The first SIGINT, SIGTERM or SIGHUP terminates the sandbox (and sbx exits 137\n"
               "with it); a second one leaves at once.  sbx's own failures exit 125; a CMD that\n"
               "is not there 127, one that cannot be executed 126.\n");
}

enum {
    OPT_IMAGE = CLI_OPT_FIRST_LOCAL,
    OPT_NAME,
    OPT_APP,
    OPT_TAG,
    OPT_MEMORY,
    OPT_CPU,
    OPT_CPU_LIMIT,
    OPT_PIDS,
    OPT_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_HOSTNAME,
    OPT_RM,
    OPT_SECRET,
    OPT_MOUNT,
};

/* "300", "90s", "10m", "2h" → seconds. */
static bool parse_seconds(const char *s, long long *ret)
{
    char *end;
    long long v;

    if (*s < '0' || *s > '9')
        return false;
    v = strtoll(s, &end, 10);
    if (v < 0 || v > 1000000)
        return false;
    if (!*end || !strcmp(end, "s"))
        *ret = v;
    else if (!strcmp(end, "m"))
        *ret = v * 60;
    else if (!strcmp(end, "h"))
        *ret = v * 3600;
    else
        return false;
    return true;
}

static bool parse_cores(const char *s, double *ret)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end || !(v > 0) || v > 1024)
        return false;
    *ret = v;
    return true;
}

/* "NAME:/dir" → volumes["/dir"] = "NAME" (a volume's name has no ':'). */
static bool parse_volume(const char *arg, json_t *volumes)
{
    const char *colon = strchr(arg, ':');
    _cleanup_free_ char *name = NULL;

    if (!colon || colon == arg || colon[1] != '/') {
        cli_usage_error("run", CLI_EXIT_RUN_FAILURE, "--volume `%s`: expected NAME:/DIR", arg);
        return false;
    }
    if (json_object_get(volumes, colon + 1)) {
        cli_usage_error("run", CLI_EXIT_RUN_FAILURE, "--volume `%s`: another volume is at %s", arg,
                        colon + 1);
        return false;
    }
    name = strndup(arg, (size_t)(colon - arg));
    if (!name || json_object_set_new(volumes, colon + 1, json_string(name)) < 0) {
        cli_usage_error("run", CLI_EXIT_RUN_FAILURE, "--volume `%s`: not valid UTF-8", arg);
        return false;
    }
    return true;
}

/* "SRC:DST[:ro|rw]", both absolute → {"src", "dst", "readonly"} appended to
 * mounts.  DST starts at the first ":/" (SRC is absolute, so that one
 * cannot be SRC's own start). */
static bool parse_mount(const char *arg, json_t *mounts)
{
    const char *split = strstr(arg, ":/"), *last = strrchr(arg, ':');
    _cleanup_free_ char *src = NULL, *dst = NULL;
    bool readonly = true;
    size_t dst_len;

    if (arg[0] != '/' || !split) {
        cli_usage_error("run", CLI_EXIT_RUN_FAILURE,
                        "--mount `%s`: expected SRC:DST[:ro|rw], both absolute paths", arg);
        return false;
    }
    dst_len = strlen(split + 1);
    if (last > split && (!strcmp(last, ":ro") || !strcmp(last, ":rw"))) {
        readonly = !strcmp(last, ":ro");
        dst_len = (size_t)(last - split - 1);
    } else if (last > split) {
        cli_usage_error("run", CLI_EXIT_RUN_FAILURE, "--mount `%s`: `%s` is not :ro or :rw", arg,
                        last);
        return false;
    }
    src = strndup(arg, (size_t)(split - arg));
    dst = strndup(split + 1, dst_len);
    if (!src || !dst ||
        json_array_append_new(
            mounts, json_pack("{s:s,s:s,s:b}", "src", src, "dst", dst, "readonly", readonly)) < 0) {
        cli_usage_error("run", CLI_EXIT_RUN_FAILURE, "--mount `%s`: not valid UTF-8", arg);
        return false;
    }
    return true;
}

/* Ends a sandbox sbx made for itself: forgotten with --rm, else terminated
 * (it stays listed as finished, like an exited container). */
static void sandbox_end(struct cli_client *c, const char *id, bool rm)
{
    _cleanup_free_ char *path =
        rm ? cli_strdupf("/v1/sandboxes/%s", id) : cli_strdupf("/v1/sandboxes/%s/terminate", id);
    _cleanup_json_ json_t *body = rm ? NULL : json_object();
    struct cli_error err = {0};

    /* Unreachable daemon: the failure that ended the session said so. */
    if (cli_call(c, rm ? "DELETE" : "POST", path, body, NULL, &err) < 0 && err.status != 404 &&
        err.status != 0)
        cli_error_print(&err);
    cli_error_free(&err);
}

/* -t: an idle sandbox, CMD exec'd in it with a pty, then its end. */
static int run_tty(struct cli_client *c, const char *id, json_t *cmd, json_t *env,
                   const char *workdir, bool interactive, bool rm)
{
    _cleanup_json_ json_t *argv = json_array();
    struct cli_exec_opts o = {
        .env = env, .workdir = workdir, .interactive = interactive, .tty = true};
    int status;

    if (json_array_size(cmd))
        json_array_extend(argv, cmd);
    else
        for (size_t i = 0; shell_argv[i]; i++)
            json_array_append_new(argv, json_string(shell_argv[i]));
    o.argv = argv;
    status = cli_exec_attached(c, id, &o);
    sandbox_end(c, id, rm);
    return status;
}

static int run_attached(struct cli_client *c, const char *id, bool interactive, bool rm)
{
    struct cli_attach_result res = {0};
    struct cli_error err = {0};
    int r, status;

    r = cli_attach(c,
                   &(struct cli_attach){
                       .sandbox_id = id,
                       .want_stdout = true,
                       .want_stderr = true,
                       .follow = true,
                       .forward_stdin = interactive,
                       .close_stdin = !interactive,
                       .want_returncode = true,
                       .on_signal = CLI_SIGNAL_TERMINATE,
                   },
                   &res, &err);
    if (r < 0) {
        if (!strcmp(err.code, "failed_precondition") && err.message &&
            strstr(err.message, "no entrypoint")) {
            sandbox_end(c, id, true);
            fprintf(stderr, "sbx run: the image has no command to run: give one after --, "
                            "or use -d for an idle sandbox\n");
        } else {
            if (err.status == 0 && err.message) {
                /* The daemon is out of reach: what we made may live on. */
                _cleanup_free_ char *msg = strdup(err.message);
                cli_error_set(&err, 0, "%s (sandbox %s may still be running)", msg ? msg : "?", id);
            }
            cli_error_print(&err);
        }
        cli_error_free(&err);
        json_decref(res.record);
        return CLI_EXIT_RUN_FAILURE;
    }
    if (!res.has_returncode) {
        /* Detached by a second signal, our output gone, or it never ran. */
        if (res.output_closed)
            status = 128 + SIGPIPE;
        else if (res.signal)
            status = 128 + res.signal;
        else {
            _cleanup_free_ char *why = cli_sandbox_error_message(c, id);
            cli_warn("%s", why ? why : "the sandbox ended without a returncode");
            status = cli_exit_for_start_failure(why);
        }
    } else {
        status =
            res.returncode >= 0 && res.returncode <= 255 ? res.returncode : CLI_EXIT_RUN_FAILURE;
    }
    json_decref(res.record);
    if (rm)
        sandbox_end(c, id, true);
    return status;
}

int cmd_run(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"image", required_argument, NULL, OPT_IMAGE},
        {"name", required_argument, NULL, OPT_NAME},
        {"app", required_argument, NULL, OPT_APP},
        {"tag", required_argument, NULL, OPT_TAG},
        {"env", required_argument, NULL, 'e'},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"cpu", required_argument, NULL, OPT_CPU},
        {"cpu-limit", required_argument, NULL, OPT_CPU_LIMIT},
        {"pids", required_argument, NULL, OPT_PIDS},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"workdir", required_argument, NULL, 'w'},
        {"hostname", required_argument, NULL, OPT_HOSTNAME},
        {"detach", no_argument, NULL, 'd'},
        {"rm", no_argument, NULL, OPT_RM},
        {"interactive", no_argument, NULL, 'i'},
        {"tty", no_argument, NULL, 't'},
        {"secret", required_argument, NULL, OPT_SECRET},
        {"volume", required_argument, NULL, 'v'},
        {"mount", required_argument, NULL, OPT_MOUNT},
        {NULL, 0, NULL, 0},
    };
    _cleanup_json_ json_t *body = json_object(), *env = json_object(), *tags = json_object();
    _cleanup_json_ json_t *cmd = json_array(), *answer = NULL;
    _cleanup_json_ json_t *secrets = json_array(), *volumes = json_object(), *mounts = json_array();
    const char *workdir = NULL;
    bool detach = false, rm = false, interactive = false, tty = false;
    struct cli_error err = {0};
    struct cli_client *c;
    const char *id;
    long long n;
    double cores;
    int ch;

    if (!body || !env || !tags || !cmd || !secrets || !volumes || !mounts)
        return CLI_EXIT_RUN_FAILURE;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+hdite:w:v:", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case OPT_IMAGE:
            if (!cli_set_string("run", body, "image", optarg))
                return CLI_EXIT_RUN_FAILURE;
            break;
        case OPT_NAME:
            if (!cli_set_string("run", body, "name", optarg))
                return CLI_EXIT_RUN_FAILURE;
            break;
        case OPT_APP:
            if (!cli_set_string("run", body, "app", optarg))
                return CLI_EXIT_RUN_FAILURE;
            break;
        case OPT_TAG:
            if (!cli_parse_kv("run", "--tag", optarg, false, tags))
                return CLI_EXIT_RUN_FAILURE;
            break;
        case 'e':
            if (!cli_parse_kv("run", "--env", optarg, true, env))
                return CLI_EXIT_RUN_FAILURE;
            break;
        case OPT_MEMORY:
            if (!cli_parse_mib(optarg, &n))
                return cli_usage_error("run", CLI_EXIT_RUN_FAILURE,
                                       "--memory `%s`: MiB, or a size like 512m or 2g", optarg);
            json_object_set_new(body, "memory_mib", json_integer(n));
            break;
        case OPT_CPU:
        case OPT_CPU_LIMIT:
            if (!parse_cores(optarg, &cores))
                return cli_usage_error("run", CLI_EXIT_RUN_FAILURE,
                                       "%s `%s`: a number of cores above 0",
                                       ch == OPT_CPU ? "--cpu" : "--cpu-limit", optarg);
            json_object_set_new(body, ch == OPT_CPU ? "cpu" : "cpu_limit", json_real(cores));
            break;
        case OPT_PIDS: {
            char *end;
            n = strtoll(optarg, &end, 10);
            if (*end || end == optarg || n < 1)
                return cli_usage_error("run", CLI_EXIT_RUN_FAILURE,
                                       "--pids `%s`: a positive number", optarg);
            json_object_set_new(body, "pids_max", json_integer(n));
            break;
        }
        case OPT_TIMEOUT:
        case OPT_IDLE_TIMEOUT:
            if (!parse_seconds(optarg, &n))
                return cli_usage_error("run", CLI_EXIT_RUN_FAILURE,
                                       "%s `%s`: seconds, or a duration like 90s, 10m, 2h",
                                       ch == OPT_TIMEOUT ? "--timeout" : "--idle-timeout", optarg);
            json_object_set_new(body, ch == OPT_TIMEOUT ? "timeout_s" : "idle_timeout_s",
                                json_integer(n));
            break;
        case 'w':
            workdir = optarg;
            if (!cli_set_string("run", body, "workdir", optarg))
                return CLI_EXIT_RUN_FAILURE;
            break;
        case OPT_HOSTNAME:
            if (!cli_set_string("run", body, "hostname", optarg))
                return CLI_EXIT_RUN_FAILURE;
            break;
        case 'd':
            detach = true;
            break;
        case OPT_RM:
            rm = true;
            break;
        case 'i':
            interactive = true;
            break;
        case 't':
            tty = true;
            break;
        case OPT_SECRET:
            if (json_array_append_new(secrets, json_string(optarg)) < 0)
                return cli_usage_error("run", CLI_EXIT_RUN_FAILURE,
                                       "--secret `%s`: not valid UTF-8", optarg);
            break;
        case 'v':
            if (!parse_volume(optarg, volumes))
                return CLI_EXIT_RUN_FAILURE;
            break;
        case OPT_MOUNT:
            if (!parse_mount(optarg, mounts))
                return CLI_EXIT_RUN_FAILURE;
            break;
        default:
            return cli_bad_option("run", argv, CLI_EXIT_RUN_FAILURE);
        }
    }
    for (int i = optind; i < argc; i++)
        if (json_array_append_new(cmd, json_string(argv[i])) < 0)
            return cli_usage_error("run", CLI_EXIT_RUN_FAILURE, "CMD `%s`: not valid UTF-8",
                                   argv[i]);
    if (detach && (rm || interactive || tty))
        return cli_usage_error("run", CLI_EXIT_RUN_FAILURE,
                               "-d cannot be combined with --rm, -i or -t");
    if (tty && interactive && !isatty(STDIN_FILENO))
        return cli_usage_error("run", CLI_EXIT_RUN_FAILURE,
                               "-it needs a terminal on stdin (use -i alone for pipes)");
    if (json_object_size(env))
        json_object_set(body, "env", env);
    if (json_object_size(tags))
        json_object_set(body, "tags", tags);
    if (json_array_size(secrets))
        json_object_set(body, "secrets", secrets);
    if (json_object_size(volumes))
        json_object_set(body, "volumes", volumes);
    if (json_array_size(mounts))
        json_object_set(body, "mounts", mounts);
    if (json_array_size(cmd) && !tty)
        json_object_set(body, "entrypoint", cmd);

    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_RUN_FAILURE;
    if (cli_call(c, "POST", "/v1/sandboxes", body, &answer, &err) < 0) {
        cli_error_print(&err);
        cli_error_free(&err);
        return CLI_EXIT_RUN_FAILURE;
    }
    id = cli_str(answer, "sandbox_id");
    if (!id) {
        fprintf(stderr, "sbx: sandboxd's answer to create has no sandbox_id\n");
        return CLI_EXIT_RUN_FAILURE;
    }
    if (detach) {
        printf("%s\n", id);
        return 0;
    }
    if (tty)
        return run_tty(c, id, cmd, env, workdir, interactive, rm);
    return run_attached(c, id, interactive, rm);
}
