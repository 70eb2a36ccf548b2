/* volume.c — sbx volume: volumes, directories that outlive sandboxes and
 * that sandboxes mount (`sbx run --volume NAME:/path`), and their files,
 * through the volumes API; like `modal volume` and `docker volume`.
 *
 * The files of a volume are reachable with no sandbox running: put and get
 * are `sbx cp` (cp.c) on the volume's files API, with its semantics (a
 * directory is copied whole, onto an existing directory the source goes
 * inside it, `-` is stdin or stdout). */
#include "cli.h"

#include <getopt.h>
#include <string.h>

#define ABOUT                                                                                      \
    "Volumes: directories kept by the daemon, mounted read-write by sandboxes\n"                   \
    "(sbx run --volume NAME:/path), shared by the sandboxes that mount them at once,\n"            \
    "their files reachable with no sandbox running."

/* The volume's API path; NAME is a name or a volume id. */
static char *volume_base(const char *name)
{
    _cleanup_free_ char *e = cli_escape(name);

    return cli_strdupf("/v1/volumes/%s", e ? e : "");
}

/* A path in the volume, absolute ("data/x" means "/data/x"). */
static char *remote_path(const char *p)
{
    return cli_strdupf("%s%s", p[0] == '/' ? "" : "/", p);
}

/* The volume must be there: otherwise copies would report its paths as
 * missing rather than itself. */
static int volume_check(struct cli_client *c, const char *base, struct cli_error *err)
{
    return cli_call(c, "GET", base, NULL, NULL, err);
}

/* The options every subcommand without its own takes: --help and --host.
 * Returns -1 to go on, else the exit status. */
static int parse_common(struct cli *cli, const char *cmd, void (*usage)(FILE *f), int argc,
                        char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
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
        default:
            return cli_bad_option(cmd, argv, CLI_EXIT_USAGE);
        }
    }
    return -1;
}

/* A NAME argument the API can take as one path segment. */
static bool name_ok(const char *cmd, const char *name)
{
    if (!*name || strchr(name, '/')) {
        cli_usage_error(cmd, CLI_EXIT_USAGE, "volume name `%s`: letters, digits, `.`, `_`, `-`",
                        name);
        return false;
    }
    return true;
}

/* ---- create ---- */

static void create_usage(FILE *f)
{
    fprintf(f, "usage: sbx volume create [OPTIONS] NAME\n"
               "       sbx volume create --ephemeral [OPTIONS]\n"
               "Creates the volume NAME (letters, digits, `.`, `_`, `-`; up to 63, not starting\n"
               "with `.`) and prints its name.  One that exists already is left as it is (an\n"
               "error when --size asks for another cap than it has).\n\n"
               "      --size MIB     cap its files at MIB (or with a unit: 512m, 2g); writes\n"
               "                     past it fail with ENOSPC (default: no cap)\n"
               "      --ephemeral    a volume named by its id (printed instead), deleted once the\n"
               "                     sandboxes that mounted it have all finished\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int volume_create(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"ephemeral", no_argument, NULL, CLI_OPT_FIRST_LOCAL},
        {"size", required_argument, NULL, CLI_OPT_FIRST_LOCAL + 1},
        {NULL, 0, NULL, 0},
    };
    _cleanup_json_ json_t *answer = NULL, *body = json_object();
    _cleanup_free_ char *path = NULL;
    struct cli_error err = {0};
    bool ephemeral = false;
    struct cli_client *c;
    long long mib;
    int ch;

    if (!body)
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
        case CLI_OPT_FIRST_LOCAL:
            ephemeral = true;
            break;
        case CLI_OPT_FIRST_LOCAL + 1:
            if (!cli_parse_mib(optarg, &mib) || mib < 1)
                return cli_usage_error("volume create", CLI_EXIT_USAGE,
                                       "--size `%s`: MiB, or a size like 512m or 2g", optarg);
            json_object_set_new(body, "size_mib", json_integer(mib));
            break;
        default:
            return cli_bad_option("volume create", argv, CLI_EXIT_USAGE);
        }
    }
    if (ephemeral && optind < argc)
        return cli_usage_error("volume create", CLI_EXIT_USAGE,
                               "an ephemeral volume is named by its id: give no NAME");
    if (!ephemeral && argc - optind != 1)
        return cli_usage_error("volume create", CLI_EXIT_USAGE, "give one NAME");
    if (!ephemeral && !name_ok("volume create", argv[optind]))
        return CLI_EXIT_USAGE;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (ephemeral) {
        json_object_set_new(body, "ephemeral", json_true());
        if (cli_call(c, "POST", "/v1/volumes", body, &answer, &err) < 0)
            return cli_fail(&err);
    } else {
        path = volume_base(argv[optind]);
        if (cli_call(c, "PUT", path, body, &answer, &err) < 0)
            return cli_fail(&err);
    }
    printf("%s\n", cli_str(answer, "name") ?: "?");
    return 0;
}

/* ---- ls ---- */

static void ls_usage(FILE *f)
{
    fprintf(f, "usage: sbx volume ls [OPTIONS]\n"
               "Lists the volumes, by name: their size cap (SIZE, `-` for none) and the\n"
               "number of sandboxes that have not finished and mount each (IN USE BY).\n\n"
               "  -q, --quiet        names only\n"
               "      --json         the volumes as a JSON array (in_use_by: their sandboxes)\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int volume_ls(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    static const char *const headers[] = {"NAME",    "VOLUME ID", "KIND",
                                          "CREATED", "SIZE",      "IN USE BY"};
    _cleanup_json_ json_t *answer = NULL, *list = NULL;
    bool quiet = false, as_json = false;
    struct cli_error err = {0};
    struct cli_client *c;
    struct cli_table *t;
    json_t *v;
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
            return cli_bad_option("volume ls", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind < argc)
        return cli_usage_error("volume ls", CLI_EXIT_USAGE, "unexpected argument `%s`",
                               argv[optind]);
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    if (cli_call(c, "GET", "/v1/volumes", NULL, &answer, &err) < 0)
        return cli_fail(&err);
    list = cli_sorted_by(json_object_get(answer, "volumes"), "name");
    if (!list)
        return CLI_EXIT_FAILURE;
    if (as_json)
        return cli_print_json(list) < 0 ? CLI_EXIT_FAILURE : 0;
    if (quiet) {
        json_array_foreach(list, i, v) printf("%s\n", cli_str(v, "name") ?: "");
        return 0;
    }
    t = cli_table_new(6, headers);
    json_array_foreach(list, i, v)
    {
        json_t *cap = json_object_get(v, "size_mib");
        _cleanup_free_ char *size =
            json_is_integer(cap) ? cli_fmt_bytes((uint64_t)json_integer_value(cap) << 20) : NULL;
        _cleanup_free_ char *ago = cli_fmt_ago(json_number_value(json_object_get(v, "created_at")));
        _cleanup_free_ char *users =
            cli_strdupf("%zu", json_array_size(json_object_get(v, "in_use_by")));
        const char *cells[] = {cli_str(v, "name"),
                               cli_str(v, "volume_id"),
                               json_is_true(json_object_get(v, "ephemeral")) ? "ephemeral"
                                                                             : "named",
                               ago,
                               size,
                               users};
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
    return 0;
}

/* ---- rm ---- */

static void rm_usage(FILE *f)
{
    fprintf(f, "usage: sbx volume rm [OPTIONS] NAME...\n"
               "Deletes volumes and their files, and prints their names.  A volume that a\n"
               "sandbox which has not finished mounts is not deleted: terminate that first.\n\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int volume_rm(struct cli *cli, int argc, char **argv)
{
    struct cli_client *c;
    int r = parse_common(cli, "volume rm", rm_usage, argc, argv), status = 0;

    if (r >= 0)
        return r;
    if (optind >= argc)
        return cli_usage_error("volume rm", CLI_EXIT_USAGE, "no NAME given");
    for (int a = optind; a < argc; a++)
        if (!name_ok("volume rm", argv[a]))
            return CLI_EXIT_USAGE;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    for (int a = optind; a < argc; a++) {
        _cleanup_free_ char *path = volume_base(argv[a]);
        struct cli_error err = {0};

        if (cli_call(c, "DELETE", path, NULL, NULL, &err) < 0) {
            if (err.status == 409) {
                /* In use: say what to do about it. */
                _cleanup_free_ char *msg = strdup(err.message ?: "");
                cli_error_set(&err, 409, "%s: terminate %s first (sbx terminate)",
                              msg ? msg : "in use", strchr(msg ?: "", ',') ? "them" : "it");
            }
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

/* ---- put, get ---- */

static void put_usage(FILE *f)
{
    fprintf(f, "usage: sbx volume put [OPTIONS] NAME LOCAL [REMOTE_PATH]\n"
               "Copies the local file or directory LOCAL (recursively; `-` is stdin) into the\n"
               "volume at REMOTE_PATH (default /), like sbx cp: onto an existing directory it\n"
               "goes inside it, otherwise REMOTE_PATH becomes the copy.  Parent directories are\n"
               "made; files there are replaced.  Modes come along; a symlink is copied as the\n"
               "file it points to, other kinds are skipped.\n\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int volume_put(struct cli *cli, int argc, char **argv)
{
    _cleanup_free_ char *base = NULL, *rpath = NULL;
    struct cli_error err = {0};
    struct cli_client *c;
    int r = parse_common(cli, "volume put", put_usage, argc, argv);

    if (r >= 0)
        return r;
    if (argc - optind < 2 || argc - optind > 3)
        return cli_usage_error("volume put", CLI_EXIT_USAGE, "give NAME, LOCAL and REMOTE_PATH");
    if (!name_ok("volume put", argv[optind]))
        return CLI_EXIT_USAGE;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    base = volume_base(argv[optind]);
    rpath = remote_path(argc - optind == 3 ? argv[optind + 2] : "/");
    if (volume_check(c, base, &err) < 0 ||
        cli_copy_up(c, base, argv[optind], argv[optind + 1], rpath, &err) < 0)
        return cli_fail(&err);
    return 0;
}

static void get_usage(FILE *f)
{
    fprintf(f, "usage: sbx volume get [OPTIONS] NAME REMOTE_PATH [LOCAL]\n"
               "Copies the file or directory REMOTE_PATH (recursively) of the volume to LOCAL,\n"
               "like sbx cp: into an existing directory, else as LOCAL.  Without LOCAL, or with\n"
               "`-`, a file goes to stdout.  A file comes in one piece, of at most 64 MiB.\n\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int volume_get(struct cli *cli, int argc, char **argv)
{
    _cleanup_free_ char *base = NULL, *rpath = NULL;
    struct cli_error err = {0};
    struct cli_client *c;
    int r = parse_common(cli, "volume get", get_usage, argc, argv);

    if (r >= 0)
        return r;
    if (argc - optind < 2 || argc - optind > 3)
        return cli_usage_error("volume get", CLI_EXIT_USAGE, "give NAME and REMOTE_PATH");
    if (!name_ok("volume get", argv[optind]))
        return CLI_EXIT_USAGE;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    base = volume_base(argv[optind]);
    rpath = remote_path(argv[optind + 1]);
    if (volume_check(c, base, &err) < 0 ||
        cli_copy_down(c, base, argv[optind], rpath, argc - optind == 3 ? argv[optind + 2] : "-",
                      &err) < 0)
        return cli_fail(&err);
    return 0;
}

/* ---- files, rm-file ---- */

static void files_usage(FILE *f)
{
    fprintf(f, "usage: sbx volume files [OPTIONS] NAME [PATH]\n"
               "Lists the directory PATH (default /) of the volume, by name.\n\n"
               "      --json         the entries as a JSON array\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int volume_files(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    static const char *const headers[] = {"NAME", "TYPE", "SIZE", "MODE", "MODIFIED"};
    _cleanup_free_ char *base = NULL, *rpath = NULL, *escaped = NULL, *path = NULL;
    _cleanup_json_ json_t *answer = NULL, *list = NULL;
    struct cli_error err = {0};
    bool as_json = false;
    struct cli_client *c;
    struct cli_table *t;
    json_t *v;
    size_t i;
    int ch;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            files_usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case CLI_OPT_JSON:
            as_json = true;
            break;
        default:
            return cli_bad_option("volume files", argv, CLI_EXIT_USAGE);
        }
    }
    if (argc - optind < 1 || argc - optind > 2)
        return cli_usage_error("volume files", CLI_EXIT_USAGE, "give NAME and at most one PATH");
    if (!name_ok("volume files", argv[optind]))
        return CLI_EXIT_USAGE;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    base = volume_base(argv[optind]);
    rpath = remote_path(argc - optind == 2 ? argv[optind + 1] : "/");
    escaped = cli_escape(rpath);
    path = cli_strdupf("%s/ls?path=%s", base, escaped ? escaped : "");
    if (cli_call(c, "GET", path, NULL, &answer, &err) < 0)
        return cli_fail(&err);
    list = cli_sorted_by(answer, "name");
    if (!list)
        return CLI_EXIT_FAILURE;
    if (as_json)
        return cli_print_json(list) < 0 ? CLI_EXIT_FAILURE : 0;
    t = cli_table_new(5, headers);
    json_array_foreach(list, i, v)
    {
        const char *type = cli_str(v, "type");
        _cleanup_free_ char *size =
            type && !strcmp(type, "file")
                ? cli_fmt_bytes((uint64_t)json_integer_value(json_object_get(v, "size")))
                : NULL;
        _cleanup_free_ char *mode = cli_strdupf(
            "%04llo", (unsigned long long)json_integer_value(json_object_get(v, "mode")));
        _cleanup_free_ char *ago = cli_fmt_ago(json_number_value(json_object_get(v, "mtime")));
        const char *cells[] = {cli_str(v, "name"), type, size, mode, ago};
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
    return 0;
}

static void rm_file_usage(FILE *f)
{
    fprintf(f, "usage: sbx volume rm-file [OPTIONS] NAME PATH...\n"
               "Deletes files, and empty directories, from the volume.\n\n"
               "  -r, --recursive    directories with what is in them too\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int volume_rm_file(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"recursive", no_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    _cleanup_free_ char *base = NULL;
    bool recursive = false;
    struct cli_client *c;
    int ch, status = 0;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "hr", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            rm_file_usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case 'r':
            recursive = true;
            break;
        default:
            return cli_bad_option("volume rm-file", argv, CLI_EXIT_USAGE);
        }
    }
    if (argc - optind < 2)
        return cli_usage_error("volume rm-file", CLI_EXIT_USAGE, "give NAME and a PATH");
    if (!name_ok("volume rm-file", argv[optind]))
        return CLI_EXIT_USAGE;
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;
    base = volume_base(argv[optind]);
    for (int a = optind + 1; a < argc; a++) {
        _cleanup_free_ char *rpath = remote_path(argv[a]), *e = cli_escape(rpath);
        _cleanup_free_ char *path =
            cli_strdupf("%s/files?path=%s%s", base, e ? e : "", recursive ? "&recursive=1" : "");
        struct cli_error err = {0};

        if (cli_call(c, "DELETE", path, NULL, NULL, &err) < 0) {
            if (!recursive && err.message && strstr(err.message, "Directory not empty")) {
                _cleanup_free_ char *msg = strdup(err.message);
                cli_error_set(&err, err.status, "%s (-r deletes it with what is in it)",
                              msg ? msg : "");
            }
            cli_error_print(&err);
            cli_error_free(&err);
            status = CLI_EXIT_FAILURE;
        }
    }
    return status;
}

static const struct cli_subcommand subcommands[] = {
    {"create", volume_create, "[--size MIB] NAME", "create a volume"},
    {"ls", volume_ls, "[-q] [--json]", "list volumes"},
    {"rm", volume_rm, "NAME...", "delete volumes and their files"},
    {"put", volume_put, "NAME LOCAL [REMOTE_PATH]", "copy a file or directory in"},
    {"get", volume_get, "NAME REMOTE_PATH [LOCAL]", "copy a file or directory out"},
    {"files", volume_files, "[--json] NAME [PATH]", "list a directory of a volume"},
    {"rm-file", volume_rm_file, "[-r] NAME PATH...", "delete files from a volume"},
};

int cmd_volume(struct cli *cli, int argc, char **argv)
{
    return cli_run_subcommand(cli, "volume", ABOUT, subcommands,
                              sizeof(subcommands) / sizeof(subcommands[0]), argc, argv);
}
