/* secret.c — sbx secret: named sets of environment variables kept by the
 * daemon, for sandboxes (`sbx run --secret NAME`) and processes (`sbx exec
 * --secret NAME`); like `modal secret` and `docker secret`.
 *
 * The API never returns a value, and sbx never prints one: not in a
 * listing, and not in an error about an argument either (a malformed one
 * is named by its position or its key, never quoted whole). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

#define ABOUT                                                                                      \
    "Secrets: named sets of variables that sandboxes (sbx run --secret NAME) and\n"                \
    "processes (sbx exec --secret NAME) get in their environment.  The daemon keeps\n"             \
    "them for root only and never shows a value again."

static char *secret_path(const char *name)
{
    _cleanup_free_ char *e = cli_escape(name);

    return cli_strdupf("/v1/secrets/%s", e ? e : "");
}

static bool name_ok(const char *cmd, const char *name)
{
    if (!*name || strchr(name, '/')) {
        cli_usage_error(cmd, CLI_EXIT_USAGE, "secret name `%s`: letters, digits, `.`, `_`, `-`",
                        name);
        return false;
    }
    return true;
}

/* env[K] = V from "K=V" (len bytes); `where` names it in messages, which
 * never show the value. */
static bool add_var(json_t *env, const char *kv, size_t len, const char *where)
{
    const char *eq = memchr(kv, '=', len);
    _cleanup_free_ char *key = NULL;

    if (!eq || eq == kv) {
        cli_usage_error("secret create", CLI_EXIT_USAGE, "%s: expected K=VALUE (not shown)", where);
        return false;
    }
    key = strndup(kv, (size_t)(eq - kv));
    if (!key)
        return false;
    if (json_object_set_new(env, key, json_stringn(eq + 1, len - (size_t)(eq - kv) - 1)) < 0) {
        cli_usage_error("secret create", CLI_EXIT_USAGE, "%s: `%s`'s value is not valid UTF-8",
                        where, key);
        return false;
    }
    return true;
}

/* K=V lines of path ("-": stdin), like docker's --env-file: blank lines and
 * lines starting with # are skipped, nothing is unquoted.  Returns 0, or
 * the exit status after printing why not. */
static int add_env_file(json_t *env, const char *path)
{
    bool is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "re");
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    bool ok = true;

    if (!f) {
        cli_warn("--env-file %s: %s", path, strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    for (unsigned lineno = 1; ok && (n = getline(&line, &cap, f)) >= 0; lineno++) {
        _cleanup_free_ char *where = NULL;
        size_t len = (size_t)n;
        const char *p = line;

        while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
            len--;
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        if (len == 0 || *p == '#')
            continue;
        where = cli_strdupf("--env-file %s, line %u", is_stdin ? "stdin" : path, lineno);
        ok = add_var(env, p, len, where);
    }
    if (ok && ferror(f)) {
        cli_warn("--env-file %s: %s", path, strerror(errno));
        if (!is_stdin)
            fclose(f);
        return CLI_EXIT_FAILURE;
    }
    if (!is_stdin)
        fclose(f);
    return ok ? 0 : CLI_EXIT_USAGE;
}

/* ---- create ---- */

static void create_usage(FILE *f)
{
    fprintf(f, "usage: sbx secret create [OPTIONS] NAME [K=V...]\n"
               "Stores the secret NAME with the variables given and prints its name.  A secret\n"
               "of that name is replaced, with all its variables: give every one again.\n"
               "A value on the command line is seen by other users (ps) and kept in shell\n"
               "history: --from-env and --env-file avoid that.\n\n"
               "      --from-env K       K with its value in sbx's environment; repeatable\n"
               "      --env-file FILE    K=V lines of FILE (`-`: stdin); blank lines and lines\n"
               "                         starting with # are skipped; repeatable\n"
               "      --host HOST        the daemon (see sbx --help)\n"
               "  -h, --help             this help\n");
}

enum {
    OPT_FROM_ENV = CLI_OPT_FIRST_LOCAL,
    OPT_ENV_FILE,
};

static int secret_create(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"from-env", required_argument, NULL, OPT_FROM_ENV},
        {"env-file", required_argument, NULL, OPT_ENV_FILE},
        {NULL, 0, NULL, 0},
    };
    _cleanup_json_ json_t *env = json_object(), *body = NULL, *answer = NULL;
    _cleanup_free_ char *path = NULL;
    struct cli_error err = {0};
    struct cli_client *c;
    const char *v;
    int ch;

    if (!env)
        return CLI_EXIT_FAILURE;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            create_usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case OPT_FROM_ENV:
            if (!*optarg || strchr(optarg, '='))
                return cli_usage_error("secret create", CLI_EXIT_USAGE,
                                       "--from-env takes a variable's name");
            v = getenv(optarg);
            if (!v)
                return cli_usage_error("secret create", CLI_EXIT_USAGE,
                                       "--from-env %s: not set here", optarg);
            if (json_object_set_new(env, optarg, json_string(v)) < 0)
                return cli_usage_error("secret create", CLI_EXIT_USAGE,
                                       "--from-env %s: the value is not valid UTF-8", optarg);
            break;
        case OPT_ENV_FILE: {
            int status = add_env_file(env, optarg);
            if (status)
                return status;
            break;
        }
        default:
            return cli_bad_option("secret create", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("secret create", CLI_EXIT_USAGE, "no NAME given");
    if (!name_ok("secret create", argv[optind]))
        return CLI_EXIT_USAGE;
    for (int a = optind + 1; a < argc; a++) {
        _cleanup_free_ char *where = cli_strdupf("argument %d after NAME", a - optind);
        if (!add_var(env, argv[a], strlen(argv[a]), where))
            return CLI_EXIT_USAGE;
    }
    if (json_object_size(env) == 0)
        return cli_usage_error("secret create", CLI_EXIT_USAGE,
                               "no variables: give K=V, --from-env or --env-file");
    body = json_pack("{s:O}", "env", env);
    path = secret_path(argv[optind]);
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (!body || cli_call(c, "PUT", path, body, &answer, &err) < 0)
        return cli_fail(&err);
    printf("%s\n", cli_str(answer, "name") ?: argv[optind]);
    return 0;
}

/* ---- ls ---- */

static void ls_usage(FILE *f)
{
    fprintf(f, "usage: sbx secret ls [OPTIONS]\n"
               "Lists the secrets, by name, with when they were created and last replaced\n"
               "(never their values).\n\n"
               "  -q, --quiet        names only\n"
               "      --json         the secrets as a JSON array\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int secret_ls(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    static const char *const headers[] = {"NAME", "CREATED", "UPDATED"};
    _cleanup_json_ json_t *answer = NULL, *list = NULL;
    bool quiet = false, as_json = false;
    struct cli_error err = {0};
    struct cli_client *c;
    struct cli_table *t;
    json_t *s;
    size_t i;
    int ch;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            ls_usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case CLI_OPT_JSON:
            as_json = true;
            break;
        default:
            return cli_bad_option("secret ls", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind < argc)
        return cli_usage_error("secret ls", CLI_EXIT_USAGE, "unexpected argument `%s`",
                               argv[optind]);
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (cli_call(c, "GET", "/v1/secrets", NULL, &answer, &err) < 0)
        return cli_fail(&err);
    list = cli_sorted_by(json_object_get(answer, "secrets"), "name");
    if (!list)
        return CLI_EXIT_FAILURE;
    if (as_json)
        return cli_print_json(list) < 0 ? CLI_EXIT_FAILURE : 0;
    if (quiet) {
        json_array_foreach(list, i, s) printf("%s\n", cli_str(s, "name") ?: "");
        return 0;
    }
    t = cli_table_new(3, headers);
    json_array_foreach(list, i, s)
    {
        _cleanup_free_ char *created =
            cli_fmt_ago(json_number_value(json_object_get(s, "created_at")));
        _cleanup_free_ char *updated =
            cli_fmt_ago(json_number_value(json_object_get(s, "updated_at")));
        const char *cells[] = {cli_str(s, "name"), created, updated};
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
    return 0;
}

/* ---- rm ---- */

static void rm_usage(FILE *f)
{
    fprintf(f, "usage: sbx secret rm [OPTIONS] NAME...\n"
               "Deletes secrets and prints their names.  Sandboxes made with one keep its\n"
               "variables; new ones cannot name it.\n\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int secret_rm(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_client *c;
    int ch, status = 0;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            rm_usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        default:
            return cli_bad_option("secret rm", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("secret rm", CLI_EXIT_USAGE, "no NAME given");
    for (int a = optind; a < argc; a++)
        if (!name_ok("secret rm", argv[a]))
            return CLI_EXIT_USAGE;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    for (int a = optind; a < argc; a++) {
        _cleanup_free_ char *path = secret_path(argv[a]);
        struct cli_error err = {0};

        if (cli_call(c, "DELETE", path, NULL, NULL, &err) < 0) {
            cli_error_print(&err);
            cli_error_free(&err);
            status = CLI_EXIT_FAILURE;
            continue;
        }
        printf("%s\n", argv[a]);
        fflush(stdout);
    }
    return status;
}

static const struct cli_subcommand subcommands[] = {
    {"create", secret_create, "NAME [K=V...]", "store a secret (or replace it)"},
    {"ls", secret_ls, "[-q] [--json]", "list secrets (names and times only)"},
    {"rm", secret_rm, "NAME...", "delete secrets"},
};

int cmd_secret(struct cli *cli, int argc, char **argv)
{
    return cli_run_subcommand(cli, "secret", ABOUT, subcommands,
                              sizeof(subcommands) / sizeof(subcommands[0]), argc, argv);
}
