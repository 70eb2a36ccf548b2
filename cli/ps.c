/* ps.c — sbx ps: the sandboxes, newest first. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sbx ps [OPTIONS]\n"
               "Lists running sandboxes, newest first.\n\n"
               "  -a, --all          finished ones too\n"
               "      --app APP      only those of APP\n"
               "      --tag K=V      only those tagged so; repeatable (all must match)\n"
               "  -q, --quiet        ids only\n"
               "      --json         the records, as a JSON array\n"
               "      --host HOST    the daemon (see sbx --help)\n"
               "  -h, --help         this help\n");
}

static int newest_first(const void *a, const void *b)
{
    double ta = json_number_value(json_object_get(*(json_t *const *)a, "created_at"));
    double tb = json_number_value(json_object_get(*(json_t *const *)b, "created_at"));

    return ta < tb ? 1 : ta > tb ? -1 : 0;
}

int cmd_ps(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"all", no_argument, NULL, 'a'},
        {"app", required_argument, NULL, CLI_OPT_FIRST_LOCAL},
        {"tag", required_argument, NULL, CLI_OPT_FIRST_LOCAL + 1},
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, CLI_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    _cleanup_json_ json_t *tags = json_object(), *answer = NULL;
    _cleanup_free_ json_t **rows = NULL;
    struct cli_buf path = {0};
    const char *app = NULL, *k;
    bool all = false, quiet = false, as_json = false;
    struct cli_error err = {0};
    struct cli_client *c;
    json_t *list, *v;
    size_t n, i;
    int ch;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "haq", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case CLI_OPT_HOST:
            cli->host = optarg;
            break;
        case 'a':
            all = true;
            break;
        case CLI_OPT_FIRST_LOCAL:
            app = optarg;
            break;
        case CLI_OPT_FIRST_LOCAL + 1:
            if (!cli_parse_kv("ps", "--tag", optarg, false, tags))
                return CLI_EXIT_USAGE;
            break;
        case 'q':
            quiet = true;
            break;
        case CLI_OPT_JSON:
            as_json = true;
            break;
        default:
            return cli_bad_option("ps", argv, CLI_EXIT_USAGE);
        }
    }
    if (optind < argc)
        return cli_usage_error("ps", CLI_EXIT_USAGE, "unexpected argument `%s`", argv[optind]);
    c = cli_client(cli);
    if (!c)
        return CLI_EXIT_FAILURE;

    {
        _cleanup_free_ char *first = cli_strdupf("/v1/sandboxes?state=%s", all ? "all" : "running");
        cli_buf_append(&path, first, strlen(first));
    }
    if (app) {
        _cleanup_free_ char *e = cli_escape(app), *q = cli_strdupf("&app=%s", e ? e : "");
        cli_buf_append(&path, q, strlen(q));
    }
    json_object_foreach(tags, k, v)
    {
        _cleanup_free_ char *ek = cli_escape(k), *ev = cli_escape(json_string_value(v));
        _cleanup_free_ char *q = cli_strdupf("&tag.%s=%s", ek ? ek : "", ev ? ev : "");
        cli_buf_append(&path, q, strlen(q));
    }
    if (!path.data || cli_call(c, "GET", path.data, NULL, &answer, &err) < 0) {
        cli_buf_free(&path);
        cli_error_print(&err);
        cli_error_free(&err);
        return CLI_EXIT_FAILURE;
    }
    cli_buf_free(&path);
    list = json_object_get(answer, "sandboxes");
    n = json_array_size(list);
    rows = calloc(n + 1, sizeof(*rows));
    if (!rows)
        return CLI_EXIT_FAILURE;
    json_array_foreach(list, i, v) rows[i] = v;
    qsort(rows, n, sizeof(*rows), newest_first);

    if (as_json) {
        _cleanup_json_ json_t *sorted = json_array();
        for (i = 0; i < n; i++)
            json_array_append(sorted, rows[i]);
        return cli_print_json(sorted) < 0 ? CLI_EXIT_FAILURE : 0;
    }
    if (quiet) {
        for (i = 0; i < n; i++)
            printf("%s\n", cli_str(rows[i], "sandbox_id"));
        return 0;
    }
    {
        static const char *const headers[] = {"SANDBOX ID", "APP",     "NAME",   "IMAGE",
                                              "STATE",      "CREATED", "STATUS", "TAGS"};
        bool any_tags = false;
        struct cli_table *t;

        for (i = 0; i < n; i++)
            any_tags |= json_object_size(json_object_get(rows[i], "tags")) > 0;
        t = cli_table_new(any_tags ? 8 : 7, headers);
        for (i = 0; i < n; i++) {
            json_t *r = rows[i];
            _cleanup_free_ char *ago =
                cli_fmt_ago(json_number_value(json_object_get(r, "created_at")));
            _cleanup_free_ char *status = cli_fmt_status(r), *tagstr = cli_fmt_tags(r);
            const char *cells[] = {cli_str(r, "sandbox_id"),
                                   cli_str(r, "app"),
                                   cli_str(r, "name"),
                                   cli_str(r, "image"),
                                   cli_str(r, "state"),
                                   ago,
                                   status,
                                   tagstr};
            cli_table_add(t, cells);
        }
        cli_table_print(t, stdout);
        cli_table_free(t);
    }
    return 0;
}
